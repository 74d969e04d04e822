"""The dtype rule: on a CPU, bfloat16 only where AMX computes it; explicit choices win."""

import logging

import pytest
import torch

from mtsa.errors import MtsaError
from mtsa.models import dtype as dtype_rule
from mtsa.models.dtype import choose_dtype, cpu_bfloat16_support
from mtsa.models.registry import check_model


@pytest.fixture()
def cpu(monkeypatch):
    """Pretend to be a CPU with or without native bf16: cpu(bf16=True, capability="AVX512")."""
    monkeypatch.delenv("MTSA_DTYPE", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)

    def pretend(bf16: bool, amx: bool = False, capability: str = "AVX512") -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)

    return pretend


def test_float32_on_a_cpu_without_native_bf16(cpu):
    cpu(bf16=False, capability="AVX2")
    choice = choose_dtype("auto", "cpu")
    assert choice.name == "float32" and choice.torch_dtype == torch.float32
    assert "no native bfloat16" in choice.reason
    cpu(bf16=False, capability="AVX512")  # AVX-512 without its BF16 extension: still emulated
    assert choose_dtype("auto", "cpu").name == "float32"


@pytest.mark.parametrize("bf16", [False, True])
def test_bfloat16_on_a_cpu_with_amx(cpu, bf16):
    cpu(bf16=bf16, amx=True)
    choice = choose_dtype("auto", "cpu")
    assert choice.torch_dtype == torch.bfloat16 and "AMX" in choice.reason


def test_float32_on_a_cpu_with_avx512_bf16_but_no_amx(cpu, monkeypatch):
    # its bf16 dot products were measured no faster than float32 (benchmarks/RESULTS.md)
    cpu(bf16=True, amx=False)
    choice = choose_dtype("auto", "cpu")
    assert choice.name == "float32" and "no AMX" in choice.reason
    cpu(bf16=True, amx=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")  # AMX capped, bf16 dot products left
    assert cpu_bfloat16_support()[0] == "AVX-512 BF16"
    assert choose_dtype("auto", "cpu").name == "float32"


def test_isa_caps_that_emulate_an_older_cpu_mean_float32(cpu, monkeypatch):
    cpu(bf16=True, amx=True, capability="AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert choose_dtype("auto", "cpu").name == "float32"
    cpu(bf16=True, amx=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    unit, why = cpu_bfloat16_support()
    assert unit is None and "ONEDNN_MAX_CPU_ISA" in why


def test_an_explicit_dtype_wins_over_the_environment_and_the_hardware(cpu, monkeypatch):
    cpu(bf16=False, capability="AVX2")
    assert choose_dtype("bf16", "cpu").name == "bfloat16"
    monkeypatch.setenv("MTSA_DTYPE", "bfloat16")
    assert choose_dtype("auto", "cpu") == dtype_rule.DtypeChoice("bfloat16", "set by $MTSA_DTYPE")
    assert choose_dtype("fp32", "cpu").name == "float32"


def test_unknown_names_are_one_line_errors(cpu, monkeypatch):
    with pytest.raises(MtsaError, match="unknown dtype 'int3'"):
        choose_dtype("int3")
    with pytest.raises(MtsaError, match="unknown dtype 'int3' in model spec"):
        check_model("embedded?dtype=int3")
    assert check_model("embedded?dtype=auto").options == {"dtype": "auto"}
    monkeypatch.setenv("MTSA_DTYPE", "half-ish")
    with pytest.raises(MtsaError, match=r"\$MTSA_DTYPE"):
        choose_dtype("auto")


def test_each_decision_is_logged_once_and_kept_per_model(cpu, caplog, monkeypatch):
    cpu(bf16=False, capability="AVX2")
    monkeypatch.setattr(dtype_rule, "_CHOSEN", {})
    with caplog.at_level(logging.INFO, logger="mtsa"):
        choose_dtype("auto", "cpu", "model-a")
        choose_dtype("auto", "cpu", "model-b")
    assert sum("runs in float32" in r.message for r in caplog.records) == 1
    kept = dtype_rule.chosen_dtypes()
    assert kept["model-a"]["dtype"] == kept["model-b"]["dtype"] == "float32"


def test_hf_models_load_in_the_chosen_dtype(cpu, tiny_model_dir):
    from mtsa.models.hf import HFChatModel

    cpu(bf16=False, capability="AVX2")
    assert HFChatModel(str(tiny_model_dir)).model.dtype == torch.float32
    cpu(bf16=True, amx=True)
    assert HFChatModel(str(tiny_model_dir)).model.dtype == torch.bfloat16
    assert HFChatModel(str(tiny_model_dir), dtype="float32").model.dtype == torch.float32


def test_describe_machine_names_the_cpu_and_its_bf16_support():
    line = dtype_rule.describe_machine()
    assert line.startswith("CPU: ") and "native bfloat16: " in line
