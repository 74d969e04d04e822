import pytest
from transformers import AutoTokenizer

from mtsa.errors import MtsaError
from mtsa.training.chat_tokens import tokenize_with_assistant_mask

MESSAGES = [{"role": "system", "content": "goal prompt"}, {"role": "user", "content": "start"},
            {"role": "assistant", "content": "Thinking 1: a\nAttack question 1: b"},
            {"role": "user", "content": "TARGET REPLY"},
            {"role": "assistant", "content": "Thinking 2: c\nAttack question 2: d"}]


def test_loss_mask_covers_exactly_the_attacker_turns(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    out = tokenize_with_assistant_mask(tokenizer, MESSAGES)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    learned = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    ignored = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert "Thinking 1: a\nAttack question 1: b" in learned and "Thinking 2: c" in learned
    assert "goal prompt" not in learned and "TARGET REPLY" not in learned and "start" not in learned
    assert "goal prompt" in ignored and "TARGET REPLY" in ignored
    assert learned.count("<|im_end|>") == 2  # the model learns to end its turn
    assert "assistant" not in learned  # the role header belongs to the prompt


def test_a_generation_prompt_the_turn_does_not_begin_with_is_refused(tiny_model_dir):
    """Reasoning models' templates open "<think>" in the generation prompt but render a finished
    turn without it: the mask would start inside the attacker's message."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    with pytest.raises(MtsaError, match="prefix by prefix"):
        tokenize_with_assistant_mask(tokenizer, MESSAGES)
