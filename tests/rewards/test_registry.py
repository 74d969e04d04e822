"""Helpfulness scorers by name: a tiny local reward model, the LLM rubric, one-line errors."""

import pytest

from mtsa.errors import MtsaError
from mtsa.judges.base import JudgeItem
from mtsa.judges.llm import LLMJudge
from mtsa.models.base import Reply
from mtsa.rewards.registry import HELPFULNESS_RUBRIC, check_helpfulness, load_helpfulness


@pytest.fixture(scope="module")
def tiny_reward_model(tiny_model_dir, tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-reward-model")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


ITEMS = [JudgeItem("goal", "short reply", history=[{"role": "user", "content": "a question"}]),
         JudgeItem("goal", "a much longer reply " * 10, history=[{"role": "user", "content": "another question"}])]


def test_reward_model_scores_are_in_0_1_and_do_not_depend_on_the_batch(tiny_reward_model):
    scorer = load_helpfulness(f"rm:{tiny_reward_model}?batch_size=2&scale=0.5")
    together = scorer.score(ITEMS)
    alone = [scorer.score([item])[0] for item in ITEMS]
    assert all(0.0 < s < 1.0 for s in together)
    assert together == pytest.approx(alone, abs=1e-5)  # left padding changes nothing
    assert scorer.name == f"rm:{tiny_reward_model}"


def test_llm_scorer_asks_with_the_helpfulness_rubric():
    class Rater:
        name = "rater"
        prompts = []

        def generate(self, conversations, params):
            self.prompts += conversations
            return [Reply("Rating: 10", 1, 1) for _ in conversations]

    scorer = LLMJudge(Rater(), rubric=HELPFULNESS_RUBRIC)
    assert scorer.score(ITEMS[:1]) == [1.0]
    assert Rater.prompts[0][0]["content"] == HELPFULNESS_RUBRIC


@pytest.mark.parametrize("name", ["armorm", "rm:", "embedded?colour=red", "rm:x?scale=big",
                                  "embedded?requests=no-such-classifier.json"])
def test_bad_scorer_names_are_one_line_errors(name):
    with pytest.raises(MtsaError) as error:
        check_helpfulness(name)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("folder", ["nowhere", "."])  # "." exists but has no config.json
def test_a_missing_local_reward_model_is_a_one_line_error_naming_it(tmp_path, folder):
    path = tmp_path / folder
    with pytest.raises(MtsaError) as error:
        check_helpfulness(f"rm:{path}?batch_size=2")
    assert f"'{path}'" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_local_reward_model_folder_with_a_config_passes_the_check(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    check_helpfulness(f"rm:{tmp_path}?scale=2")


@pytest.mark.parametrize("name", ["rm:RLHFlow/ArmoRM-Llama3-8B-v0.1", "rm:armorm?batch_size=2"])
def test_hub_reward_model_ids_pass_the_check_without_the_network(name):
    check_helpfulness(name)


def test_a_reward_model_folder_that_cannot_load_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MtsaError, match="could not load reward model"):
        load_helpfulness(f"rm:{tmp_path}")
