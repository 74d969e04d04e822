import pytest

from mtsa.errors import MtsaError
from mtsa.models.base import SamplingParams
from mtsa.models.hf import HFChatModel


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return HFChatModel(str(tiny_model_dir), batch_size=3)


def conv(text):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_batched_generation_matches_order_and_counts_tokens(model):
    conversations = [conv("hi"), conv("a much longer question " * 8), conv("mid length question")]
    replies = model.generate(conversations, SamplingParams(temperature=0, max_new_tokens=6))
    assert len(replies) == 3
    for reply, conversation in zip(replies, conversations):
        alone = model.generate([conversation], SamplingParams(temperature=0, max_new_tokens=6))[0]
        assert reply.text == alone.text  # left padding does not change greedy output
        assert 0 < reply.completion_tokens <= 6
        assert reply.prompt_tokens == alone.prompt_tokens


def test_seed_makes_sampling_reproducible(model):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=7)
    first = model.generate([conv("x"), conv("y")], params)
    second = model.generate([conv("x"), conv("y")], params)
    assert [r.text for r in first] == [r.text for r in second]


def test_per_row_temperatures_share_one_batch(model):
    """A row keeps its own temperature (and seed) whatever else is in the batch; 0 is greedy."""
    conversations = [conv("x"), conv("a longer question about y"), conv("z")]
    params = SamplingParams(max_new_tokens=8, seeds=(1, 2, 3), temperatures=(0.0, 1.2, 0.6))
    together = model.generate(conversations, params)
    alone = [model.generate([c], params.rows([i]))[0] for i, c in enumerate(conversations)]
    assert [r.text for r in together] == [r.text for r in alone]
    greedy = model.generate([conversations[0]], SamplingParams(temperature=0, max_new_tokens=8))[0]
    assert together[0].text == greedy.text


def test_long_history_is_truncated_from_the_oldest_turns(tiny_model_dir, caplog):
    model = HFChatModel(str(tiny_model_dir), max_context=200)
    history = [{"role": "system", "content": "sys"}]
    for i in range(30):
        history += [{"role": "user", "content": f"question {i} " * 5}, {"role": "assistant", "content": "ok " * 5}]
    history.append({"role": "user", "content": "last question"})
    reply = model.generate([history], SamplingParams(temperature=0, max_new_tokens=10))[0]
    assert reply.prompt_tokens <= 190
    assert "dropped its oldest turns" in caplog.text
    with pytest.raises(MtsaError, match="leaves no room for a prompt"):  # not the prompt's last tokens, cut silently
        model.generate([history], SamplingParams(temperature=0, max_new_tokens=200))


def test_missing_model_and_adapter_are_user_errors(tiny_model_dir, tmp_path):
    with pytest.raises(MtsaError, match="could not load model"):
        HFChatModel(str(tmp_path / "nope"))
    with pytest.raises(MtsaError, match="adapter .* not found"):
        HFChatModel(str(tiny_model_dir), adapter=str(tmp_path / "no-adapter"))


def test_model_without_chat_template_is_rejected(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(MtsaError, match="no chat template"):
        HFChatModel(str(folder))


def test_lora_adapter_is_merged_and_generates_what_the_unmerged_model_does(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mtsa.models.causal_lm import render_chat

    unmerged = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                              LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, weight in unmerged.named_parameters():
        if "lora_B" in name:  # a fresh adapter is a no-op (B = 0); make it change the model
            torch.nn.init.normal_(weight, std=0.5)
    unmerged.save_pretrained(tmp_path / "adapter")
    model = HFChatModel(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), dtype="float32")
    assert not hasattr(model.model, "peft_config"), "the adapter should be merged into the weights"

    params = SamplingParams(temperature=0, max_new_tokens=6)
    ids = render_chat(model.tokenizer, conv("hi"))
    with torch.no_grad():
        expected = unmerged.eval().generate(input_ids=torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                            pad_token_id=model.tokenizer.pad_token_id)
    ours = model.generate([conv("hi")], params)[0].text
    assert ours == model.tokenizer.decode(expected[0, len(ids):], skip_special_tokens=True).strip()
    assert ours != HFChatModel(str(tiny_model_dir), dtype="float32").generate([conv("hi")], params)[0].text


def test_stop_strings_end_the_reply(model):
    params = SamplingParams(temperature=0, max_new_tokens=12)
    full = model.generate([conv("hi")], params)[0]
    words = full.text.split()
    assert len(words) > 2, "the tiny model should babble several words"
    stopped = model.generate([conv("hi")], SamplingParams(temperature=0, max_new_tokens=12, stop=(words[2],)))[0]
    assert words[2] not in stopped.text
    assert stopped.completion_tokens < full.completion_tokens


def test_stop_string_matching_only_the_prompt_tail_does_not_end_the_reply(model):
    """The prompt ends with "assistant\\n": a stop string "\\n<first word>" must not fire at once."""
    params = SamplingParams(temperature=0, max_new_tokens=8)
    full = model.generate([conv("hi")], params)[0]
    first_word = full.text.split()[0]
    reply = model.generate([conv("hi")], SamplingParams(temperature=0, max_new_tokens=8, stop=("\n" + first_word,)))[0]
    assert reply.text == full.text


def test_a_final_assistant_message_is_continued_not_answered(model):
    from mtsa.models.causal_lm import render_chat

    prefix = conv("hi") + [{"role": "assistant", "content": "Thinking 1:"}]
    opened = render_chat(model.tokenizer, prefix, continue_final=True)
    assert model.tokenizer.decode(opened).endswith("Thinking 1:"), "the message must stay open"
    answer_prompt = model.tokenizer.decode(render_chat(model.tokenizer, conv("hi")))
    assert model.tokenizer.decode(opened) == answer_prompt + "Thinking 1:"
    params = SamplingParams(temperature=0, max_new_tokens=5)
    reply = model.generate([prefix], params)[0]
    assert reply.prompt_tokens == len(opened)  # the continuation alone is the reply
    assert not reply.text.startswith("Thinking 1:")
