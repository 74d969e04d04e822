"""Attacker pairs from ranked branches; the indices are pinned on a hand-built dialogue (the
released research code is off by one here and pairs the target's reply)."""

from dataclasses import replace

from mtsa.rollout.engine import RolloutSettings
from mtsa.rollout.records import DialogueRecord, TurnRecord
from mtsa.training.pairs import attacker_pairs, common_horizon, target_pair, target_rewards, unsafe_sum


def turn(n: int, question: str, reply: str, p_unsafe: float) -> TurnRecord:
    return TurnRecord(turn=n, thought=f"thought {n} ({question})", strategy="role_play", question=question,
                      reply=reply, p_unsafe=p_unsafe, attacker_tokens=5, target_tokens=5,
                      attacker_prompt_tokens=10, target_prompt_tokens=10)


class NoDiversity:
    """A reference set that ranks nothing, so the unsafe term decides."""

    def max_similarity(self, texts):
        return [0.5] * len(texts)

    def bleu(self, texts):
        return [0.1] * len(texts)


SETTINGS = RolloutSettings(turns=3)
FIRST = turn(1, "Q1 of the parent", "REPLY1 of the target", 0.1)


def candidate(name: str, p_later: float, p_h: float = 0.1) -> DialogueRecord:
    turns = [FIRST, turn(2, f"Q2 {name}", f"REPLY2 {name}", p_h), turn(3, f"Q3 {name}", f"REPLY3 {name}", p_later)]
    return DialogueRecord("g0", "goal0", turns=turns, rollout_id=f"g0/attacker2@{name}", parent="g0", branch_turn=2)


def test_the_pair_is_the_attackers_own_turn_h_after_the_chat_before_it():
    branches = [candidate("low", 0.2), candidate("best", 0.9), candidate("worst", 0.0), candidate("mid", 0.5)]
    (pair,), skipped = attacker_pairs(branches, NoDiversity(), SETTINGS)
    assert skipped == 0
    # the prompt: the attacker's chat up to turn 2, ending with the target's reply to turn 1
    assert pair.prompt[-1]["role"] == "user" and "REPLY1 of the target" in pair.prompt[-1]["content"]
    assert "Q1 of the parent" in pair.prompt[-2]["content"] and pair.prompt[-2]["role"] == "assistant"
    assert not any("Q2" in m["content"] or "REPLY2" in m["content"] for m in pair.prompt)
    # the completions: the attacker's own turn 2 of the best and the worst candidate, no target text
    assert pair.chosen == [{"role": "assistant",
                            "content": "Thinking 2: thought 2 (Q2 best)\nAttack question 2: Q2 best"}]
    assert pair.rejected[0]["content"].endswith("Attack question 2: Q2 worst")
    assert all("REPLY" not in m["content"] for m in pair.chosen + pair.rejected)
    assert pair.chosen_reward > pair.rejected_reward
    assert pair.provenance == {"parent": "g0", "turn": 2, "chosen": "g0/attacker2@best",
                               "rejected": "g0/attacker2@worst"}


def test_unsafe_sum_counts_turn_h_and_after():
    assert unsafe_sum(candidate("x", 0.5, p_h=0.25), 2) == 0.75


def test_tied_or_lone_candidates_make_no_pair():
    tied = [candidate("a", 0.5), candidate("b", 0.5)]
    lone = [replace(candidate("c", 0.9), parent="g1")]
    pairs, skipped = attacker_pairs(tied + lone, NoDiversity(), SETTINGS)
    assert pairs == [] and skipped == 2


def test_candidates_that_asked_the_same_turn_h_make_no_pair():
    same = [candidate("a", 0.9), candidate("b", 0.1)]
    same[1].turns[1] = same[0].turns[1]  # one turn-2 text, two futures
    assert attacker_pairs(same, NoDiversity(), SETTINGS) == ([], 1)


def test_a_candidate_that_never_asked_turn_h_is_left_out():
    failed = DialogueRecord("g0", "goal0", turns=[FIRST], rollout_id="g0/attacker2@x", parent="g0", branch_turn=2,
                            format_failure=True)
    (pair,), _ = attacker_pairs([failed, candidate("a", 0.9), candidate("b", 0.1)], NoDiversity(), SETTINGS)
    assert pair.provenance["chosen"] == "g0/attacker2@a" and pair.provenance["rejected"] == "g0/attacker2@b"


class HalfHelpful:
    """A helpfulness scorer giving every reply 0.5, so R_tgt counts turns and P(safe)."""

    def score(self, items):
        return [0.5] * len(items)


def test_target_futures_are_rewarded_to_the_turn_both_reached():
    original = DialogueRecord("g0", "goal0", turns=[FIRST, turn(2, "Q2", "UNSAFE2", 0.9), turn(3, "Q3", "R3", 0.2)],
                              rollout_id="g0")
    # the rewrite's branch ended after turn 2: the attacker failed its turn-3 format
    rewrite = DialogueRecord("g0", "goal0", turns=[FIRST, turn(2, "Q2", "REFUSAL2", 0.0)],
                             rollout_id="g0/rewrite2", parent="g0", branch_turn=2, format_failure=True)
    last = common_horizon(original, rewrite)
    assert last == 2
    chosen, rejected = target_rewards([(rewrite, 2, last), (original, 2, last)], HalfHelpful(), SETTINGS)
    assert (chosen, rejected) == (1.5, 0.6)  # turn 2 only: 0.5 + 1.0 against 0.5 + 0.1
    summed_to_own_end = target_rewards([(rewrite, 2, 3), (original, 2, 3)], HalfHelpful(), SETTINGS)
    assert summed_to_own_end[0] < summed_to_own_end[1]  # the bias this rule removes: 1.5 against 1.9
    pair = target_pair(original, rewrite, 2, SETTINGS, (chosen, rejected), last, "model")
    assert pair.chosen[0]["content"] == "REFUSAL2" and pair.rejected[0]["content"] == "UNSAFE2"
    assert pair.provenance["rewarded_to_turn"] == 2
