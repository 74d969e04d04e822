"""Decoding attention that reads a batch's shared prompt prefix once, not once per row.

When the HF backend generates for prompts that start with the same tokens (every attacker
prompt of a run starts with the same long system prompt), each row of the KV cache holds an
identical copy of that prefix's keys and values, and transformers' SDPA reads every copy, so
attention's memory traffic grows with batch x prefix length (a large share of a batched CPU
decoding step; benchmarks/RESULTS.md). Here, at each decoding step, the queries of all rows
attend to row 0's prefix in one call (one block of batch x heads queries against one block of
keys, as in Hydragen), each row's queries attend to its own keys after the prefix in a second
call, and the two results are merged by their log-sum-exp weights, which is exactly softmax
attention over all the keys. Prefill, and batches without a shared prefix, run transformers'
SDPA unchanged.

It builds on the CPU flash-attention kernel that `scaled_dot_product_attention` itself uses
on CPU, because that kernel also returns the log-sum-exp the merge needs; on other devices
the model keeps its default attention.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "mtsa_shared_prefix_sdpa"
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_prefix_length: ContextVar[int] = ContextVar("mtsa_shared_prefix_length", default=0)


@contextmanager
def shared_prefix(length: int) -> Iterator[None]:
    """Within this block, the first `length` cached positions are the same in every row."""
    token = _prefix_length.set(length)
    try:
        yield
    finally:
        _prefix_length.reset(token)


def use_shared_prefix_attention(model) -> bool:
    """Switch `model` to this attention if it runs SDPA on a CPU; return whether it did."""
    if _FLASH_CPU is None or model.device.type != "cpu" or model.config._attn_implementation != "sdpa":
        return False
    AttentionInterface.register(NAME, shared_prefix_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # same boolean masks as SDPA
    model.set_attn_implementation(NAME)
    return True


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0,
                            scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; query (batch, heads, 1, dim) when decoding."""
    prefix = _prefix_length.get()
    batch, heads, length, dim = query.shape
    if not prefix or length != 1 or module.training or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim ** -0.5
    queries = query.reshape(batch, kv_heads, groups, dim)  # grouped by the key head they read

    # All rows' queries against the one shared copy of the prefix: a single (1, kv_heads) block.
    together = queries.transpose(0, 1).reshape(1, kv_heads, batch * groups, dim)
    out_prefix, lse_prefix = _FLASH_CPU(together, key[:1, :, :prefix], value[:1, :, :prefix], 0.0, False,
                                        scale=scale)
    out_prefix = out_prefix.reshape(kv_heads, batch, groups, dim).transpose(0, 1)
    lse_prefix = lse_prefix.reshape(kv_heads, batch, groups).transpose(0, 1)

    # Each row's queries against its own keys (left padding and unused cache slots masked out).
    own_mask = None
    if attention_mask is not None:
        own_mask = attention_mask[..., prefix:]
        if own_mask.dtype == torch.bool:
            own_mask = torch.zeros(own_mask.shape, dtype=query.dtype).masked_fill_(~own_mask, float("-inf"))
    out_own, lse_own = _FLASH_CPU(queries, key[:, :, prefix:], value[:, :, prefix:], 0.0, False,
                                  attn_mask=own_mask, scale=scale)

    # softmax over [prefix, own] = the two partial results weighted by their shares of the total mass
    prefix_share = torch.sigmoid(lse_prefix - lse_own).unsqueeze(-1)
    output = torch.lerp(out_own.float(), out_prefix.float(), prefix_share).to(query.dtype)
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None
