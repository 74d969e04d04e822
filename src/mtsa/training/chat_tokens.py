"""Chat dialogues as token ids with a mask of the assistant's tokens (the loss mask).

TRL's own `assistant_only_loss` needs a chat template with `{% generation %}` markers, which
most models (SmolLM2, Qwen2.5, Llama 3) lack. We compute the mask from the template itself:
the tokens of assistant message i are those between the rendering of messages[:i] with a
generation prompt and the rendering of messages[:i+1]. That holds for any template whose
renderings of a conversation's prefixes are prefixes of the full rendering; we check it and
refuse templates that break it rather than silently train on the wrong tokens.
"""

from __future__ import annotations

from mtsa.errors import MtsaError
from mtsa.models.base import Conversation


def _ids(tokenizer, messages: Conversation, generation_prompt: bool) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True,
                                            return_dict=True)
    return list(encoded["input_ids"])


def tokenize_with_assistant_mask(tokenizer, messages: Conversation) -> dict[str, list[int]]:
    """{"input_ids", "assistant_masks"}: 1 on the tokens of every assistant message (and the
    end-of-turn token the template puts after it, so the model learns to stop), 0 elsewhere."""
    input_ids = _ids(tokenizer, messages, generation_prompt=False)
    mask = [0] * len(input_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _ids(tokenizer, messages[:i], generation_prompt=True)
        through = _ids(tokenizer, messages[:i + 1], generation_prompt=False)
        # a generation prompt the rendered turn does not begin with (e.g. one ending in "<think>\n")
        # would shift the mask off the message's first tokens
        if input_ids[:len(through)] != through or through[:len(prompt)] != prompt:
            raise MtsaError("the model's chat template does not render conversations prefix by prefix; "
                            "mtsa cannot tell the attacker's tokens from the rest")
        start, end = len(prompt), len(through)
        while end > start and tokenizer.decode(through[end - 1:end]).strip() == "":
            end -= 1  # trailing newlines after the end-of-turn token carry nothing to learn
        mask[start:end] = [1] * (end - start)
    return {"input_ids": input_ids, "assistant_masks": mask}
