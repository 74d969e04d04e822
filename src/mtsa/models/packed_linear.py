"""Linear layers with their weights packed once for oneDNN, for float32 generation on x86 CPUs.

`torch.nn.Linear` on CPU hands each product to a GEMM routine that re-lays out (packs) the
weight matrix at every call. When a decoding step multiplies only a few rows by each weight,
that repacking costs about as much as the product itself, and it grows the gap between a
batched step and a one-row step. oneDNN can take a weight packed ahead of time
(`mkldnn._reorder_linear_weight`) and multiply by it directly (`mkldnn._linear_pointwise`),
with the same float32 results up to rounding. The packed tensor is opaque and has no
gradient, so this is for inference models only (the chat backend), never for training.
Measurements: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import platform

import torch
from torch import nn


class PackedLinear(nn.Module):
    """`nn.Linear`'s forward over a weight packed for oneDNN (inference only)."""

    def __init__(self, linear: nn.Linear, rows: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # `rows` is oneDNN's hint for the layout; any number of rows works with it
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows),
                             persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def packing_supported() -> bool:
    """Whether this machine can pack: an x86 CPU and a torch built with oneDNN."""
    return (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def can_pack(model) -> bool:
    """Whether `model` runs where packing is known to help: float32 on an x86 CPU with oneDNN.

    bfloat16 products already go through oneDNN; other architectures were not measured."""
    return model.device.type == "cpu" and model.dtype == torch.float32 and packing_supported()


@torch.no_grad()
def pack_linear_layers(model, rows: int) -> int:
    """Replace every plain `nn.Linear` of an inference `model` by a `PackedLinear`; return how
    many. A weight tied to another module (the LM head and the input embeddings) stays there
    too: the packed copy is added, not swapped."""
    packed = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, PackedLinear(child, rows))
                packed += 1
    # Weights loaded from safetensors live in one memory-mapped file, kept mapped (and the linear
    # weights' pages resident) while any tensor of it is alive; copying what is left (embeddings,
    # norms) lets the mapping go, so the replaced weights stop counting twice.
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.layout == torch.strided:  # not the packed (opaque) weights themselves
            tensor.data = tensor.data.clone()
    return packed
