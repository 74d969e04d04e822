"""Shared-prefix decoding attention must equal transformers' SDPA over the same cache."""

from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from mtsa.models.base import SamplingParams
from mtsa.models.hf import HFChatModel
from mtsa.models.prefix_attention import shared_prefix, shared_prefix_attention


def decoding_inputs(dtype, batch=5, kv_heads=2, groups=3, prefix=40, own=12, dim=16):
    """One query per row over a cache whose first `prefix` positions are identical in every row,
    then left padding of a different width per row."""
    torch.manual_seed(0)
    query = torch.randn(batch, kv_heads * groups, 1, dim, dtype=dtype)
    shared_keys, shared_values = (torch.randn(1, kv_heads, prefix, dim, dtype=dtype) for _ in range(2))
    own_keys, own_values = (torch.randn(batch, kv_heads, own, dim, dtype=dtype) for _ in range(2))
    key = torch.cat([shared_keys.expand(batch, -1, -1, -1), own_keys], dim=2)
    value = torch.cat([shared_values.expand(batch, -1, -1, -1), own_values], dim=2)
    mask = torch.ones(batch, 1, 1, prefix + own, dtype=torch.bool)
    for row in range(batch):
        mask[row, ..., prefix:prefix + row * 2] = False  # this row's left padding
    module = SimpleNamespace(num_key_value_groups=groups, training=False, is_causal=True)
    return module, query, key, value, mask, prefix


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_equals_sdpa_when_decoding(dtype, tolerance):
    module, query, key, value, mask, prefix = decoding_inputs(dtype)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask)
    with shared_prefix(prefix):
        ours, _ = shared_prefix_attention(module, query, key, value, mask)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    assert torch.allclose(ours.float(), expected.float(), atol=tolerance)


def test_without_a_shared_prefix_it_is_sdpa():
    module, query, key, value, mask, _ = decoding_inputs(torch.float32)
    key = key.clone()
    key[1, :, :3] += 1.0  # rows no longer share their first positions: nothing may assume they do
    expected, _ = sdpa_attention_forward(module, query, key, value, mask)
    ours, _ = shared_prefix_attention(module, query, key, value, mask)  # no shared_prefix() block
    assert torch.equal(ours, expected)


def test_generation_is_unchanged(tiny_model_dir):
    system = {"role": "system", "content": "You are a careful assistant. " * 20}  # a long shared prefix
    conversations = [[system, {"role": "user", "content": text}] for text in ("hi", "tell me a longer story")]
    params = SamplingParams(temperature=0, max_new_tokens=8)
    model = HFChatModel(str(tiny_model_dir), dtype="float32")
    assert model.model.config._attn_implementation == "mtsa_shared_prefix_sdpa"
    ours = [r.text for r in model.generate(conversations, params)]
    model.model.set_attn_implementation("sdpa")
    assert ours == [r.text for r in model.generate(conversations, params)]
