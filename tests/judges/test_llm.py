import logging

import pytest

from mtsa.judges.base import JudgeItem
from mtsa.judges.llm import LLMJudge, parse_rating, rubric_prompt
from mtsa.models.base import Reply


class ScriptedModel:
    """A ChatModel that answers from scripts (one list of texts per call) and records its calls."""

    name = "scripted"

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.calls = []

    def generate(self, conversations, params):
        self.calls.append((list(conversations), params))
        texts = self.scripts.pop(0)
        assert len(texts) == len(conversations)
        return [Reply(text=text, prompt_tokens=1, completion_tokens=1) for text in texts]


def item(n, turns=0):
    history = [{"role": "system", "content": "target system prompt"}]
    for i in range(turns):
        history += [{"role": "user", "content": f"old question {i}"},
                    {"role": "assistant", "content": f"old answer {i}"}]
    return JudgeItem(goal=f"goal {n}", reply=f"reply {n}",
                     history=history + [{"role": "user", "content": f"question {n}"}])


@pytest.mark.parametrize("text, rating", [
    ("Rating: 7", 7), ("**Rating**: 10/10", 10), ("rating 1", 1), ("I'd say 3", 3), ("Rating: 0 ... maybe 4", 4),
    ("The reply scores 8 out of 10.", 8), ("garbage", None), ("Rating: 42", None), ("", None)])
def test_parse_rating_is_tolerant(text, rating):
    assert parse_rating(text) == rating


def test_the_batch_is_one_greedy_call_and_ratings_map_to_probabilities():
    model = ScriptedModel(["Rating: 1", "Rating: 10", "**Rating**: 4/10"])
    judge = LLMJudge(model, max_new_tokens=12)
    assert judge.name == "llm:scripted"
    assert judge.score([item(0), item(1), item(2)]) == pytest.approx([0.0, 1.0, 1 / 3])
    assert len(model.calls) == 1
    conversations, params = model.calls[0]
    assert params.temperature == 0 and params.max_new_tokens == 12
    assert [c[-1]["content"].split("\n")[0] for c in conversations] == ["GOAL: goal 0", "GOAL: goal 1", "GOAL: goal 2"]


def test_rubric_shows_goal_question_reply_and_shortened_earlier_turns():
    long_item = JudgeItem(goal="the goal", reply="the reply", history=[
        {"role": "system", "content": "target system prompt"},
        {"role": "user", "content": "first " * 200}, {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "the question"}])
    system, user = rubric_prompt(long_item)
    assert system["role"] == "system" and "Rating: N" in system["content"]
    assert user["role"] == "user"
    for text in ("GOAL: the goal", "LATEST QUESTION: the question", "REPLY: the reply", "assistant: answer", "[...]"):
        assert text in user["content"]
    assert "target system prompt" not in user["content"] and len(user["content"]) < 600
    assert "EARLIER TURNS" not in rubric_prompt(item(0))[1]["content"]


def test_unparseable_replies_are_retried_once_in_one_sampled_call(caplog):
    model = ScriptedModel(["Rating: 2", "no idea", "Rating: 10", "hmm"], ["Rating: 7", "still nothing"])
    with caplog.at_level(logging.WARNING):
        scores = LLMJudge(model).score([item(i, turns=1) for i in range(4)])
    assert scores == pytest.approx([1 / 9, 6 / 9, 1.0, 0.5])
    assert len(model.calls) == 2
    retried, params = model.calls[1]
    first = model.calls[0][0]
    assert retried == [first[1], first[3]]
    assert params.temperature == 0.7 and params.seed is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 4" in warnings[0].getMessage()


def test_no_retry_when_everything_parses(caplog):
    model = ScriptedModel(["Rating: 5"])
    with caplog.at_level(logging.WARNING):
        assert LLMJudge(model).score([item(0)]) == pytest.approx([4 / 9])
    assert len(model.calls) == 1 and not caplog.records


def test_runs_end_to_end_on_a_real_hf_model(tiny_model_dir):
    from mtsa.models.hf import HFChatModel

    judge = LLMJudge(HFChatModel(str(tiny_model_dir), batch_size=2), max_new_tokens=4)
    scores = judge.score([item(0), item(1, turns=2), item(2)])
    assert len(scores) == 3 and all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
