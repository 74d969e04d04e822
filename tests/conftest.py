"""Shared fixtures: a tiny randomly initialised chat model built locally (no downloads).

It borrows the embedded SmolLM2 tokenizer (real chat template, real vocabulary) and puts a
2-layer, 64-wide Llama behind it, so every test that needs "a model" loads in well under a
second and generates gibberish quickly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mtsa.models.embedded import chat_model_dir

    folder = tmp_path_factory.mktemp("tiny-chat-model")
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
