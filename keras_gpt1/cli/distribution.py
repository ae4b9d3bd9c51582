"""Command-line flags for distributed training, shared by `keras-gpt1 pretrain` and `finetune`.

The library functions take Python arguments (`distribution_scope(mode, mesh)`); this module maps
`--distribute`, `--mesh` and `--cpu-devices` onto them, and `DISTRIBUTION_FLAG_NAMES` maps the
arguments the library's errors name back onto the flags.
"""

import contextlib

# For `keras_gpt1.cli.flag_wording`: the distribution arguments whose flag has another name.
DISTRIBUTION_FLAG_NAMES = {
    "mode": "--distribute",
    "count": "--cpu-devices",
    "use_virtual_cpu_devices(N)": "--cpu-devices N",
}


def add_distribution_arguments(parser):
    """Adds `--distribute {none,data,model}`, `--mesh` and `--cpu-devices` to an argparse parser.

    Example:
    ```python
    parser = argparse.ArgumentParser()
    add_distribution_arguments(parser)
    args = parser.parse_args(["--distribute", "model", "--mesh", "2x4"])
    ```
    """
    group = parser.add_argument_group("distributed training")
    group.add_argument(
        "--distribute",
        default="none",
        metavar="MODE",  # checked by `distribution_scope`: the parser is built before Keras is imported
        help="data: replicate the model, split each batch (JAX keras.distribution.DataParallel, "
        "TensorFlow MirroredStrategy); model: also shard the weights (JAX only, "
        "keras.distribution.ModelParallel). Default: none.",
    )
    group.add_argument(
        "--mesh",
        default=None,
        help="device mesh DATAxMODEL, e.g. 2x4 (model mode) or 8 (data mode); the sizes must "
        "multiply to the number of devices. Default: every device on the data axis (data mode), "
        "or the widest model axis the configuration allows (model mode).",
    )
    group.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        metavar="N",
        help="split the host CPU into N virtual devices (for trying distribution without "
        "accelerators; it does not make training faster).",
    )
    return parser


@contextlib.contextmanager
def distribution_from_args(args, preset=None, model_config=None):
    """`distribution_scope` from parsed `add_distribution_arguments` flags, for CLI handlers.

    Splits the CPU first if `--cpu-devices` was given, reads the model config from `preset` (a
    built-in name or directory) when no `model_config` is passed, and checks that the (micro-)
    batch, `args.batch_size // args.gradient_accumulation_steps` when present, splits evenly.

    Example:
    ```python
    with distribution_from_args(args, preset=args.preset):
        pretrain(...)
    ```
    """
    from keras_gpt1.distribution.devices import use_virtual_cpu_devices
    from keras_gpt1.distribution.scope import distribution_scope

    mode = getattr(args, "distribute", "none") or "none"
    if getattr(args, "cpu_devices", None):
        use_virtual_cpu_devices(args.cpu_devices)
    if model_config is None and preset is not None and mode == "model":
        from keras_gpt1.models.preset_io import load_backbone_config

        model_config = load_backbone_config(preset)
    with distribution_scope(mode, getattr(args, "mesh", None), model_config=model_config) as dist:
        batch_size = getattr(args, "batch_size", None)
        if isinstance(batch_size, int):
            accumulation = getattr(args, "gradient_accumulation_steps", None) or 1
            dist.check_batch_size(batch_size // max(1, accumulation))
        yield dist
