"""The library's layers, checked: every import in `keras_gpt1` -- at module level or inside a
function -- points to the same layer or one below it, so data flows downward and nothing imports
upward (docs/architecture.md).

The check reads the source with `ast` (nothing is imported), so it is fast and backend-free.
"""

import ast
import pathlib

import pytest

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1] / "keras_gpt1"

# Top to bottom. A module belongs to the layer of its longest matching prefix. Package
# `__init__` modules that re-export a public API from several layers (`keras_gpt1`,
# `keras_gpt1.training`) are facades and sit at the top with the workflows they expose.
LAYERS = (
    (
        "command line",
        (
            "keras_gpt1.cli",
            "keras_gpt1.convert.cli",
            "keras_gpt1.distribution.cli",
            "keras_gpt1.export.cli",
            "keras_gpt1.generation.cli",
            "keras_gpt1.tasks.cli",
            "keras_gpt1.tokenizers.cli",
            "keras_gpt1.training.cli",
        ),
    ),
    (
        "workflows and public facades",
        (
            "keras_gpt1.__init__",
            "keras_gpt1.training.__init__",
            "keras_gpt1.training.pretraining",
            "keras_gpt1.training.losses",
            "keras_gpt1.training.chunked_loss",
            "keras_gpt1.tasks.finetune",
            "keras_gpt1.export",
            "keras_gpt1.convert",
            "keras_gpt1.hub",
        ),
    ),
    ("task models", ("keras_gpt1.tasks",)),
    ("models", ("keras_gpt1.models",)),
    ("generation", ("keras_gpt1.generation",)),
    ("layers", ("keras_gpt1.layers",)),
    ("text", ("keras_gpt1.tokenizers", "keras_gpt1.data")),
    ("training utilities", ("keras_gpt1.training", "keras_gpt1.distribution")),
    ("foundations", ("keras_gpt1.utils", "keras_gpt1.presets")),
)


def _module_name(path):
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    return ".".join(parts)  # `keras_gpt1.training.__init__` for a package's own module


def _layer_of(module):
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[0]


def _is_module(name):
    relative = pathlib.Path(*name.split("."))
    base = PACKAGE_ROOT.parent / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _target(name):
    """The module an import executes last: a package resolves to its `__init__`."""
    base = PACKAGE_ROOT.parent / pathlib.Path(*name.split("."))
    return name + ".__init__" if (base / "__init__.py").is_file() else name


def imports_of(path, source=None):
    """`(line, imported module)` for every `keras_gpt1` import in a file, at any depth."""
    module = _module_name(path)
    package = module.rsplit(".", 1)[0] if not module.endswith(".__init__") else module[: -len(".__init__")]
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return [(line, _target(name)) for line, name in found if name.split(".")[0] == "keras_gpt1"]


def upward_imports(path, source=None):
    module = _module_name(path)
    layer = _layer_of(module)
    return [
        f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {module} ({LAYERS[layer][0]}) imports "
        f"{target} ({LAYERS[_layer_of(target)][0]})"
        for line, target in imports_of(path, source)
        if _layer_of(target) < layer
    ]


def test_no_module_imports_upward():
    files = sorted(PACKAGE_ROOT.rglob("*.py"))
    assert len(files) > 40
    problems = [problem for path in files for problem in upward_imports(path)]
    assert not problems, "Upward imports:\n" + "\n".join(problems)


def test_every_module_has_a_layer():
    for path in PACKAGE_ROOT.rglob("*.py"):
        _layer_of(_module_name(path))


@pytest.mark.parametrize(
    "statement",
    [
        "from keras_gpt1.training import create_optimizer",  # a facade above the models
        "from keras_gpt1.tasks.text_classifier import GPT1TextClassifier",
        "import keras_gpt1.generation.cli",
        "from keras_gpt1 import training",
        "from ..tasks import finetune",  # relative
    ],
)
def test_an_upward_import_is_caught_at_any_depth(statement):
    path = PACKAGE_ROOT / "models" / "causal_lm.py"
    source = f"def build():\n    if True:\n        {statement}\n"
    problems = upward_imports(path, source)
    assert len(problems) == 1 and "keras_gpt1/models/causal_lm.py:3" in problems[0], problems


def test_a_downward_import_passes():
    path = PACKAGE_ROOT / "models" / "causal_lm.py"
    assert upward_imports(path, "from keras_gpt1.layers.lean import dropout\nfrom . import losses\n") == []


def test_training_pretrain_is_the_function_whatever_was_imported_first():
    """Importing the trainer's module must not shadow the `pretrain` function in the package."""
    import keras_gpt1.training.pretraining as module
    from keras_gpt1.training import pretrain

    assert pretrain is module.pretrain
