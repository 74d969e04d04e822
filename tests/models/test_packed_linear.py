"""Packed linear layers must compute what transformers' layers do."""

import pytest
import torch
from torch import nn

from mtsa.models.base import SamplingParams
from mtsa.models.hf import HFChatModel
from mtsa.models.packed_linear import PackedLinear, can_pack, pack_linear_layers, packing_supported

pytestmark = pytest.mark.skipif(not packing_supported(), reason="no oneDNN packing on this machine")


@pytest.mark.parametrize("rows", [1, 3, 16, 40])
def test_packed_linear_matches_linear(rows):
    torch.manual_seed(0)
    linear = nn.Linear(48, 80)
    packed = PackedLinear(linear, rows=16)  # the hint need not match the rows multiplied
    x = torch.randn(2, rows, 48)
    assert torch.allclose(packed(x), linear(x), atol=1e-5)


def test_pack_replaces_every_plain_linear_and_keeps_tied_weights(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 200, 31]])
    expected = model(input_ids=ids).logits
    linears = sum(type(m) is nn.Linear for m in model.modules())
    assert pack_linear_layers(model, rows=4) == linears
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)
    assert model.get_input_embeddings().weight is not None


def test_chat_model_generates_the_same_packed_or_not(tiny_model_dir):
    conversations = [[{"role": "user", "content": "Say something about boats."}],
                     [{"role": "user", "content": "A longer question, about trains and how they run."}]]
    params = SamplingParams(temperature=0, max_new_tokens=8)
    packed = HFChatModel(str(tiny_model_dir), dtype="float32", batch_size=2)
    plain = HFChatModel(str(tiny_model_dir), dtype="float32", batch_size=2, packed_linear=False)
    assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    assert [r.text for r in packed.generate(conversations, params)] == \
           [r.text for r in plain.generate(conversations, params)]


def test_can_pack_only_float32_on_cpu():
    class Fake:
        device = torch.device("cpu")
        dtype = torch.bfloat16

    assert not can_pack(Fake())
