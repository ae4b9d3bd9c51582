"""The library's layers, checked: every import in `keras_gpt1` -- at module level or inside a
function, and `importlib.import_module("keras_gpt1...")` too -- points to the same layer or one
below it, counting the package `__init__` modules an import runs on the way, so data flows
downward and nothing imports upward (docs/architecture.md). Each folder is one layer.

The check reads the source with `ast` (nothing is imported), so it is fast and backend-free.
"""

import ast
import pathlib

import pytest

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1] / "keras_gpt1"

# Top to bottom. A module belongs to the layer of its longest matching prefix; every module of a
# folder belongs to its folder's layer (`test_each_folder_is_one_layer`). The package's own
# `__init__` (the public API) runs before any of its modules, whoever imports them, so it is not
# counted as a parent; importing a name from it (`from keras_gpt1 import GPT1CausalLM`) is.
LAYERS = (
    ("command line", ("keras_gpt1.cli",)),
    ("public API", ("keras_gpt1.__init__",)),
    ("workflows", ("keras_gpt1.workflows",)),
    ("export", ("keras_gpt1.export",)),
    ("task models", ("keras_gpt1.tasks",)),
    ("models and checkpoints", ("keras_gpt1.models", "keras_gpt1.hub", "keras_gpt1.convert")),
    ("generation", ("keras_gpt1.generation",)),
    ("layers", ("keras_gpt1.layers",)),
    ("text", ("keras_gpt1.tokenizers", "keras_gpt1.data")),
    ("training", ("keras_gpt1.training", "keras_gpt1.distribution")),
    ("foundations", ("keras_gpt1.utils", "keras_gpt1.presets")),
)
ROOT_INIT = "keras_gpt1.__init__"


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


def executed_modules(name):
    """What importing `name` runs: each parent package's `__init__` (the root's excepted, see
    `LAYERS`), then `name` itself (a package's `__init__`)."""
    parts = name.split(".")
    parents = [".".join(parts[:i]) + ".__init__" for i in range(2, len(parts))]
    return [parent for parent in parents if parent != ROOT_INIT] + [_target(name)]


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
        elif _is_import_module_call(node):
            found.append((node.lineno, node.args[0].value))
    return [
        (line, executed)
        for line, name in found
        if name.split(".")[0] == "keras_gpt1"
        for executed in executed_modules(name)
    ]


def _is_import_module_call(node):
    """`importlib.import_module("keras_gpt1...")` (or `import_module(...)`) with a literal name."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return False
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    return name == "import_module" and isinstance(node.args[0].value, str)


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


def test_each_folder_is_one_layer():
    """A folder's modules share its `__init__`'s layer, so a folder never mixes layers again."""
    for init in PACKAGE_ROOT.rglob("__init__.py"):
        if init.parent == PACKAGE_ROOT:
            continue
        layer = _layer_of(_module_name(init))
        for path in init.parent.glob("*.py"):
            assert _layer_of(_module_name(path)) == layer, f"{path} is not in its folder's layer"


# Each upward import the layout once had, put back in a module of today's layout.
UPWARD_IMPORTS = [
    # A model compiling with the optimizer through a `training/__init__` that imports the trainer.
    ("training/__init__.py", "from keras_gpt1.workflows.pretraining import pretrain"),
    ("models/causal_lm.py", "from keras_gpt1.workflows import pretrain"),
    # Generation's command line importing the models; the distribution flags reading a preset.
    ("generation/generate.py", "from keras_gpt1.models import GPT1CausalLM"),
    ("distribution/scope.py", "from keras_gpt1.models.preset_io import load_backbone_config"),
    # Loading the subcommands by name, and a feature importing back from the command line.
    ("training/optimizers.py", 'importlib.import_module("keras_gpt1.cli.pretrain")'),
    ("training/callbacks.py", "from keras_gpt1.cli import flag_wording"),
    # Others: the public API, a task model from the models, a relative import.
    ("models/causal_lm.py", "from keras_gpt1 import GPT1TextClassifier"),
    ("models/causal_lm.py", "from keras_gpt1.tasks.text_classifier import GPT1TextClassifier"),
    ("models/causal_lm.py", "from ..tasks import base"),
    ("layers/attention.py", "import keras_gpt1.generation.samplers"),
]


@pytest.mark.parametrize("where, statement", UPWARD_IMPORTS)
def test_an_upward_import_is_caught_at_any_depth(where, statement):
    path = PACKAGE_ROOT / where
    source = f"def build():\n    if True:\n        {statement}\n"
    problems = upward_imports(path, source)
    assert problems and all(f"keras_gpt1/{where}:3" in problem for problem in problems), problems


def test_a_parent_package_is_counted(monkeypatch):
    """Importing `keras_gpt1.training.optimizers` runs `keras_gpt1/training/__init__.py`: were that
    package's `__init__` a layer above the models, a model importing the optimizer would be
    importing upward."""
    assert executed_modules("keras_gpt1.training.optimizers") == [
        "keras_gpt1.training.__init__",
        "keras_gpt1.training.optimizers",
    ]
    layers = (("facade", ("keras_gpt1.training.__init__",)),) + LAYERS
    monkeypatch.setitem(globals(), "LAYERS", layers)
    path = PACKAGE_ROOT / "models" / "causal_lm.py"
    problems = upward_imports(path, "from keras_gpt1.training.optimizers import create_optimizer\n")
    assert len(problems) == 1 and "keras_gpt1.training.__init__ (facade)" in problems[0], problems


def test_a_downward_import_passes():
    path = PACKAGE_ROOT / "models" / "causal_lm.py"
    source = (
        "from keras_gpt1.layers.lean import dropout\nfrom . import backbone\n"
        "from keras_gpt1.training.optimizers import create_optimizer\nfrom keras_gpt1 import presets\n"
    )
    assert upward_imports(path, source) == []


def test_workflows_pretrain_is_the_function_whatever_was_imported_first():
    """Importing the trainer's module must not shadow the `pretrain` function in the package."""
    import keras_gpt1.workflows.pretraining as module
    from keras_gpt1.workflows import pretrain

    assert pretrain is module.pretrain
