"""Which turn Stage 2 branches from, and the branches it makes."""

from mtsa.adversarial.resampling import attacker_branches, attacker_turn, target_turn
from mtsa.rollout.records import DialogueRecord, TurnRecord


def dialogue(*p_unsafe: float, rollout_id: str = "g0") -> DialogueRecord:
    turns = [TurnRecord(turn=i + 1, thought=f"t{i + 1}", strategy="role_play", question=f"q{i + 1}",
                        reply=f"r{i + 1}", p_unsafe=p, attacker_tokens=5, target_tokens=5,
                        attacker_prompt_tokens=10, target_prompt_tokens=10) for i, p in enumerate(p_unsafe)]
    return DialogueRecord("g0", "goal0", turns=turns, rollout_id=rollout_id)


def test_attacker_turn_is_the_last_low_turn_before_the_first_unsafe_one():
    assert attacker_turn(dialogue(0.1, 0.2, 0.9, 0.1)) == 2
    assert attacker_turn(dialogue(0.1, 0.4, 0.9)) == 1  # turn 2 was already half working
    assert attacker_turn(dialogue(0.1, 0.2, 0.3, 0.6), safe_below=0.25) == 2
    assert attacker_turn(dialogue(0.9, 0.1)) is None  # unsafe at once: no earlier state to redraw
    assert attacker_turn(dialogue(0.1, 0.2)) is None  # never succeeded


def test_target_turn_is_the_first_unsafe_reply():
    assert target_turn(dialogue(0.1, 0.7, 0.9)) == 2
    assert target_turn(dialogue(0.1, 0.2)) is None
    assert target_turn(dialogue(0.1, 0.4), threshold=0.3) == 2


def test_a_success_before_the_attackers_format_failure_is_resampled():
    failed_later = dialogue(0.1, 0.8)
    failed_later.format_failure = True  # its attacker's turn 3 never parsed
    assert attacker_turn(failed_later) == 1 and target_turn(failed_later) == 2


def test_attacker_branches_one_per_temperature_with_distinct_ids():
    records = [dialogue(0.1, 0.9), dialogue(0.9, rollout_id="g1"), dialogue(0.0, 0.1, rollout_id="g2")]
    branches = attacker_branches(records, [0.6, 0.8, 1.0, 1.2])
    assert len(branches) == 4  # only the first dialogue has a turn to redraw
    assert len({b.id for b in branches}) == 4
    assert {b.branch.attacker_temperature for b in branches} == {0.6, 0.8, 1.0, 1.2}
    assert all(b.branch.turn == 1 and b.branch.parent is records[0] for b in branches)
