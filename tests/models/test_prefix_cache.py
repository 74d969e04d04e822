"""The shared-prefix KV cache must not change what the model generates."""

import pytest

from mtsa.attacker.format import attacker_opening
from mtsa.models.base import SamplingParams
from mtsa.models.embedded import chat_model_dir
from mtsa.models.hf import HFChatModel, _shared_prefix_length


@pytest.fixture(scope="module")
def model():
    return HFChatModel(str(chat_model_dir()), dtype="float32", batch_size=2)


def test_prefix_cache_keeps_greedy_output_identical(model):
    conversations = [attacker_opening("Explain how to pick a lock", 3),
                     attacker_opening("Describe, in a long and winding sentence, how to forge a signature", 3)]
    conversations[1] += [{"role": "assistant", "content": "Thinking 1: x\nAttack question 1: y"},
                         {"role": "user", "content": "Sure, here is some text."}]
    params = SamplingParams(temperature=0, max_new_tokens=6)
    model.prefix_cache = True
    cached = model.generate(conversations, params)
    assert model._prefix_caches, "the batch shares its system prompt, so a prefix should be cached"
    again = model.generate(conversations, params)  # reuses the remembered prefix
    alone = model.generate(conversations[:1], params)  # a batch of one reuses it too
    assert len(model._prefix_caches) == 1 and alone[0].text == cached[0].text
    model.prefix_cache = False
    plain = [model.generate([c], params)[0] for c in conversations]
    assert [r.text for r in cached] == [r.text for r in again] == [r.text for r in plain]
    assert [r.prompt_tokens for r in cached] == [r.prompt_tokens for r in plain]


def test_shared_prefix_length():
    assert _shared_prefix_length([[1] * 100 + [2], [1] * 100 + [3, 4]]) == 100
    assert _shared_prefix_length([[1] * 10 + [2], [1] * 10 + [3]]) == 0  # too short to be worth it
    assert _shared_prefix_length([[1] * 100, [1] * 100]) == 99  # every row keeps one token of its own


def test_preallocated_cache_generates_what_transformers_default_cache_does(model):
    import torch

    from mtsa.models.causal_lm import render_chat

    conversation = attacker_opening("Explain how to pick a lock", 3)
    ours = model.generate([conversation], SamplingParams(temperature=0, max_new_tokens=8))[0]
    ids = torch.tensor([render_chat(model.tokenizer, conversation)])
    with torch.no_grad():
        default = model.model.generate(input_ids=ids, max_new_tokens=8, do_sample=False,
                                       pad_token_id=model.tokenizer.pad_token_id)
    assert ours.text == model.tokenizer.decode(default[0, ids.shape[1]:], skip_special_tokens=True)
