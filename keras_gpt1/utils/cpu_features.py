"""What the CPU computes natively: bfloat16 (`avx512_bf16`) and AMX tiles (`amx_bf16`).

The fastest precision and compilation choices differ between CPUs with native bfloat16 and
AVX2-only ones (see `keras_gpt1.utils.precision` and `keras_gpt1.utils.jit`), so they are
decided by capability, detected once per process from the flags Linux lists in
`/proc/cpuinfo` (the flags `lscpu` shows). Elsewhere (macOS, Windows, a container without
`/proc`) nothing is detected, which keeps the AVX2 choices: those are correct everywhere, only
slower where bfloat16 is native.

`KERAS_GPT1_NATIVE_BFLOAT16=1` (or `0`) overrides the detection, e.g. to try the other branch's
defaults, or where `/proc/cpuinfo` hides the flags (some virtual machines).
"""

import functools
import os

OVERRIDE_ENV = "KERAS_GPT1_NATIVE_BFLOAT16"
CPUINFO = "/proc/cpuinfo"


def cpu_flags():
    """The CPU's feature flags as a frozenset (empty where `CPUINFO` cannot be read)."""
    return _read_flags(CPUINFO)


@functools.lru_cache(maxsize=None)
def _read_flags(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def has_amx():
    """True where the CPU has AMX bfloat16 tiles (`amx_bf16`), e.g. Intel Sapphire Rapids."""
    return "amx_bf16" in cpu_flags()


def has_native_bfloat16():
    """True where the CPU multiplies bfloat16 natively (`avx512_bf16` or `amx_bf16`).

    `KERAS_GPT1_NATIVE_BFLOAT16=1|0` overrides the detection.

    Example:
    ```python
    from keras_gpt1.utils.cpu_features import has_native_bfloat16
    has_native_bfloat16()   # True on e.g. AMD Zen 4 or Intel Sapphire Rapids, False on AVX2-only CPUs
    ```
    """
    forced = os.environ.get(OVERRIDE_ENV, "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    if forced:
        raise ValueError(f"{OVERRIDE_ENV}={os.environ[OVERRIDE_ENV]!r}: expected 1 or 0.")
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags
