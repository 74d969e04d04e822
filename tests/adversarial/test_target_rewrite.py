"""Safe rewrites: instructed target first, then retries, then the fallback; sources counted."""

from mtsa.adversarial.target_rewrite import SAFETY_INSTRUCTION, safe_rewrites, source_counts, template_refusal
from mtsa.models.base import Reply
from mtsa.rollout.engine import RolloutSettings
from mtsa.rollout.records import DialogueRecord, TurnRecord

SETTINGS = RolloutSettings(turns=2)


def dialogue(rollout_id: str, category: str = "weapons") -> DialogueRecord:
    turns = [TurnRecord(turn=n, thought="t", strategy=None, question=f"{rollout_id} question {n}",
                        reply=f"harmful reply {n}", p_unsafe=0.9, attacker_tokens=1, target_tokens=1,
                        attacker_prompt_tokens=1, target_prompt_tokens=1) for n in (1, 2)]
    return DialogueRecord(rollout_id, "goal", category, turns=turns, rollout_id=rollout_id)


class ScriptedTarget:
    """Call k answers dialogue ids in `refuse_on_call[k]` with a refusal, others with compliance."""

    name = "scripted-target"

    def __init__(self, refuse_on_call: list[set[str]]):
        self.refuse_on_call, self.calls = refuse_on_call, []

    def generate(self, conversations, params):
        self.calls.append(conversations)
        self.temperatures = [*getattr(self, "temperatures", []), params.temperature]
        refusing = self.refuse_on_call[len(self.calls) - 1] if len(self.calls) <= len(self.refuse_on_call) else set()
        owner = [c[-1]["content"].split(" ")[0] for c in conversations]
        return [Reply("No: that could hurt people." if o in refusing else "Sure, step one...", 5, 5) for o in owner]


class ComplianceJudge:
    name = "scripted-judge"

    def __init__(self):
        self.items = []

    def score(self, items):
        self.items += items
        return [1.0 if item.reply.startswith("Sure") else 0.0 for item in items]


def test_rewrites_come_from_the_model_then_retries_then_templates():
    records = [dialogue("a"), dialogue("b"), dialogue("c", category="unknown")]
    target, judge = ScriptedTarget([{"a"}, {"b"}, set()]), ComplianceJudge()
    rewrites = safe_rewrites([(r, 2) for r in records], target, judge, SETTINGS, retries=2)
    assert [(w.parent, w.turn, w.source) for w in rewrites] == [("a", 2, "model"), ("b", 2, "retry"),
                                                                ("c", 2, "template")]
    assert [len(call) for call in target.calls] == [3, 2, 1]  # only what is still unsafe is drawn again
    assert rewrites[2].reply == template_refusal(records[2]) and "real harm" in rewrites[2].reply
    assert source_counts(rewrites) == {"model": 1, "retry": 1, "fallback_model": 0, "template": 1}
    # the target saw turn 1 and the instructed question; the judge saw the plain question
    first = target.calls[0][0]
    assert [m["content"] for m in first[-3:-1]] == ["a question 1", "harmful reply 1"]
    assert first[-1]["content"] == "a question 2" + SAFETY_INSTRUCTION
    assert judge.items[0].history[-1] == {"role": "user", "content": "a question 2"}


def test_a_fallback_model_answers_before_the_templates():
    records = [dialogue("a"), dialogue("b")]
    fallback = ScriptedTarget([{"a"}])
    rewrites = safe_rewrites([(r, 1) for r in records], ScriptedTarget([]), ComplianceJudge(), SETTINGS,
                             retries=0, fallback=fallback)
    assert [w.source for w in rewrites] == ["fallback_model", "template"]
    assert rewrites[1].reply == template_refusal(records[1]) and "weapons" in rewrites[1].reply


def test_retries_of_a_greedy_target_sample_instead_of_repeating_its_first_reply():
    from dataclasses import replace

    from mtsa.models.base import SamplingParams

    greedy = replace(SETTINGS, target_sampling=SamplingParams(temperature=0.0))
    target = ScriptedTarget([set(), set(), set()])
    safe_rewrites([(dialogue("a"), 2)], target, ComplianceJudge(), greedy, retries=2)
    assert target.temperatures == [0.0, 1.0, 1.0]
