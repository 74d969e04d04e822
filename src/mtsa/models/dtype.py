"""Which floating-point type a model runs in, decided in one place for every model load.

bfloat16 halves memory and is the fast path on GPUs and on CPUs with AMX tiles. Elsewhere
`auto` means float32: on AVX2-only x86 (AMD before Zen 4, older Xeons) PyTorch emulates
bfloat16 and a bfloat16 matrix product is several times slower than a float32 one; on CPUs
with AVX-512 BF16 but no AMX the bfloat16 dot products exist, yet float32 (with its weights
packed once, `packed_linear.py`) was measured faster overall: the sentence encoder and LoRA
training faster, generation on par (benchmarks/RESULTS.md). A default that is fast on one CPU
must not be slow on another.

Precedence: an explicit dtype (a spec's `dtype=` option or a `--dtype` flag), then the
environment variable MTSA_DTYPE (which also reaches models that take no options, such as the
embedded judge's encoder), then the hardware rule. Each decision is logged once per process
and kept, so run folders can record which dtype each model ran in and why.

No torch import at module level: `spec.py` validates dtype names without loading torch.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from mtsa.errors import MtsaError

log = logging.getLogger(__name__)

ENV_VAR = "MTSA_DTYPE"
ALIASES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
           "float32": "float32", "fp32": "float32"}
DTYPE_CHOICES = ("auto", *ALIASES)

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which it has no bfloat16 instructions, and no AMX.
ONEDNN_CAPS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})
ONEDNN_CAPS_WITHOUT_AMX = ONEDNN_CAPS_WITHOUT_BF16 | {"AVX2_VNNI_2", "AVX512_CORE_BF16", "AVX512_CORE_FP16",
                                                      "AVX10_1_512"}


@dataclass(frozen=True)
class DtypeChoice:
    """A dtype and why it was chosen (written to run folders as is)."""

    name: str  # canonical: bfloat16, float16 or float32
    reason: str

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.name)


_CHOSEN: dict[str, DtypeChoice] = {}  # model name -> its choice, in load order


def check_dtype_name(name: str, where: str) -> str:
    """The canonical name of `name` ('auto' stays 'auto'); a one-line error naming `where` otherwise."""
    key = name.strip().lower()
    if key == "auto":
        return key
    if key not in ALIASES:
        raise MtsaError(f"unknown dtype '{name}' in {where}; choose one of {', '.join(DTYPE_CHOICES)}")
    return ALIASES[key]


def choose_dtype(requested: str = "auto", device: str = "cpu", model: str = "model") -> DtypeChoice:
    """The dtype `model` is loaded in on `device`, with the reason; see the module docstring."""
    requested = check_dtype_name(requested, f"the dtype of {model}")
    from_env = check_dtype_name(os.environ.get(ENV_VAR) or "auto", f"${ENV_VAR}")
    if requested != "auto":
        choice = DtypeChoice(requested, "set explicitly")
    elif from_env != "auto":
        choice = DtypeChoice(from_env, f"set by ${ENV_VAR}")
    else:
        choice = hardware_dtype(device)
    if choice not in _CHOSEN.values():
        log.info("%s runs in %s: %s", model, choice.name, choice.reason)
    _CHOSEN[model] = choice
    return choice


def chosen_dtypes() -> dict[str, dict[str, str]]:
    """Every model loaded so far in this process -> {"dtype", "reason"}, for config files."""
    return {model: {"dtype": c.name, "reason": c.reason} for model, c in _CHOSEN.items()}


def hardware_dtype(device: str) -> DtypeChoice:
    """The fastest safe dtype for `device` ("cpu", "cuda", "cuda:1", "mps", ...)."""
    import torch

    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", "CUDA device with bfloat16 support")
        return DtypeChoice("float16", "CUDA device without bfloat16 support")
    if device.startswith("mps"):
        return DtypeChoice("float16", "Apple MPS device")
    if device != "cpu":
        return DtypeChoice("float32", f"device '{device}': no faster dtype known to be safe")
    unit, detail = cpu_bfloat16_support()
    if unit == "AMX":
        return DtypeChoice("bfloat16", f"CPU {cpu_name()} computes bfloat16 in AMX tiles ({detail})")
    if unit:
        return DtypeChoice("float32", f"CPU {cpu_name()} computes bfloat16 with {detail} but has no AMX; "
                                      "float32 is faster there overall")
    return DtypeChoice("float32", f"CPU {cpu_name()} has no native bfloat16 ({detail}), so float32 is faster")


def cpu_bfloat16_support() -> tuple[str | None, str]:
    """(the fastest unit this CPU computes bfloat16 with as PyTorch runs here: "AMX",
    "AVX-512 BF16" or None; the evidence).

    A unit counts only if PyTorch may use it: its vector kernels run at AVX-512 (not capped by
    ATEN_CPU_CAPABILITY) and oneDNN is not capped below it by ONEDNN_MAX_CPU_ISA.
    `get_cpu_capability()` alone says "AVX512" on CPUs without BF16.
    """
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    features = []
    if _torch_cpu_check("_is_avx512_bf16_supported"):
        features.append("AVX-512 BF16")
    if _torch_cpu_check("_is_amx_tile_supported"):
        features.append("AMX")
    if not features:
        return None, f"vector ISA {capability}; AVX-512 BF16 and AMX not found"
    present = " and ".join(features)
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if onednn_cap in ONEDNN_CAPS_WITHOUT_BF16:
        return None, f"{present} present, but ONEDNN_MAX_CPU_ISA={onednn_cap}"
    if "AVX512" not in capability.upper():
        return None, f"{present} present, but PyTorch's kernels run at {capability}"
    if "AMX" in features and onednn_cap not in ONEDNN_CAPS_WITHOUT_AMX:
        return "AMX", present
    if "AVX-512 BF16" in features:
        return "AVX-512 BF16", "AVX-512 BF16" + (f" (AMX capped by ONEDNN_MAX_CPU_ISA={onednn_cap})"
                                                  if "AMX" in features else "")
    return None, f"{present} present, but ONEDNN_MAX_CPU_ISA={onednn_cap}"


def _torch_cpu_check(name: str) -> bool:
    """One of torch.cpu's private feature checks, or the CPU flags where this torch lacks it."""
    import torch

    check = getattr(torch.cpu, name, None)
    if check is not None:
        return bool(check())
    flag = {"_is_avx512_bf16_supported": "avx512_bf16", "_is_amx_tile_supported": "amx_tile"}[name]
    return flag in _cpu_flags()


def _cpu_info_field(field: str) -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == field:
            return value.strip()
    return ""


def _cpu_flags() -> set[str]:
    return set(_cpu_info_field("flags").split())


def cpu_name() -> str:
    """The CPU's model name as the OS reports it (what `lscpu` shows)."""
    return _cpu_info_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def describe_machine() -> str:
    """One line naming the CPU, its bfloat16 support and the ISA caps in force: printed by benchmarks."""
    import torch

    unit, detail = cpu_bfloat16_support()
    caps = [f"{var}={os.environ[var]}" for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(var)]
    return (f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"vector ISA {torch.backends.cpu.get_cpu_capability()}, native bfloat16: "
            + (detail if unit else f"no ({detail})") + (f"; caps: {', '.join(caps)}" if caps else ""))
