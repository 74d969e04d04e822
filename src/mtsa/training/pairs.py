"""Branches -> preference pairs, in TRL's conversational format (`prompt`, `chosen`, `rejected`).

Attacker pairs (MTSA Stage 2): the candidates redrawn for one state (same parent dialogue,
same turn h) are ranked by R_adv; the prompt is the attacker's chat before turn h and the
completions are the attacker's own turn-h messages of the best and the worst candidate.
The released research code is off by one here and pairs the *target's* reply instead;
`tests/training/test_pairs.py` pins the indices on a hand-built dialogue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from mtsa.judges.base import Judge, JudgeItem
from mtsa.models.base import Conversation
from mtsa.rewards.adversarial import ReferenceAttacks, adversarial_rewards
from mtsa.rollout.engine import RolloutSettings, attack_of, chats_at
from mtsa.rollout.records import DialogueRecord


@dataclass
class PreferencePair:
    prompt: Conversation
    chosen: Conversation  # one assistant message
    rejected: Conversation
    chosen_reward: float
    rejected_reward: float
    provenance: dict = field(default_factory=dict)  # parent dialogue, turn, branch ids

    def to_json(self) -> dict:
        return asdict(self)


def unsafe_sum(record: DialogueRecord, turn: int) -> float:
    """Sum of P(unsafe) over turns `turn`..H: how well an attack at `turn` worked, then and later."""
    return sum(t.p_unsafe for t in record.turns[turn - 1:])


def attacker_pairs(branches: Sequence[DialogueRecord], reference: ReferenceAttacks,
                   settings: RolloutSettings) -> tuple[list[PreferencePair], int]:
    """One pair per state whose candidates can be ranked; also the number of states skipped
    (fewer than two candidates that reached turn h, all candidates tied, or the best and the
    worst asking the same turn h)."""
    states: dict[tuple[str, int], list[DialogueRecord]] = defaultdict(list)
    for branch in branches:
        states[(branch.parent, branch.branch_turn)].append(branch)
    pairs, skipped = [], 0
    for (parent, turn), candidates in states.items():
        candidates = [c for c in candidates if len(c.turns) >= turn]  # a format failure never asked turn h
        pair = _attacker_pair(candidates, turn, reference, settings) if len(candidates) >= 2 else None
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    return pairs, skipped


def _attacker_pair(candidates: list[DialogueRecord], turn: int, reference: ReferenceAttacks,
                   settings: RolloutSettings) -> PreferencePair | None:
    questions = [c.turns[turn - 1].question for c in candidates]
    rewards = adversarial_rewards([unsafe_sum(c, turn) for c in candidates], reference.max_similarity(questions),
                                  reference.bleu(questions))
    best = max(range(len(candidates)), key=rewards.__getitem__)
    worst = min(range(len(candidates)), key=rewards.__getitem__)
    if rewards[best] - rewards[worst] < 1e-9:
        return None

    def message(candidate: DialogueRecord) -> Conversation:
        recorded = candidate.turns[turn - 1]
        return [{"role": "assistant", "content": attack_of(recorded).render(turn)}]

    chosen, rejected = message(candidates[best]), message(candidates[worst])
    if chosen == rejected:  # two temperatures drew the same turn; only the futures differed: nothing to learn
        return None
    prompt, _ = chats_at(candidates[best], turn, settings)  # turns before h are the parent's, alike in all
    return PreferencePair(prompt, chosen, rejected, rewards[best], rewards[worst],
                          {"parent": candidates[best].parent, "turn": turn, "chosen": candidates[best].rollout_id,
                           "rejected": candidates[worst].rollout_id})


def target_prompt(record: DialogueRecord, turn: int, settings: RolloutSettings) -> Conversation:
    """The target's chat up to and including the question of `turn`: the state its reply answers."""
    _, chat = chats_at(record, turn, settings)
    return chat + [{"role": "user", "content": record.turns[turn - 1].question}]


def target_rewards(states: Sequence[tuple[DialogueRecord, int, int]], helpfulness: Judge,
                   settings: RolloutSettings) -> list[float]:
    """R_tgt of each (dialogue, turn h, last turn): the sum over turns h..last of helpfulness(q, r) +
    P(safe | q, r), P(safe) being 1 - the P(unsafe) the judge gave the turn. One helpfulness call
    for all turns."""
    items, owners = [], []
    for index, (record, turn, last) in enumerate(states):
        for later in record.turns[turn - 1:last]:
            items.append(JudgeItem(record.goal, later.reply, history=target_prompt(record, later.turn, settings)))
            owners.append((index, 1.0 - later.p_unsafe))
    totals = [0.0] * len(states)
    for (index, safe), helpful in zip(owners, helpfulness.score(items) if items else []):
        totals[index] += helpful + safe
    return totals


def common_horizon(original: DialogueRecord, rewrite: DialogueRecord) -> int:
    """The last turn both futures of a target pair reached. A dialogue ends before H when the
    attacker fails its turn format, which the target's reply did not choose; summing each future
    to its own end would count those missing turns as zero reward against the shorter side."""
    return min(len(original.turns), len(rewrite.turns))


def target_pair(original: DialogueRecord, rewrite: DialogueRecord, turn: int, settings: RolloutSettings,
                rewards: tuple[float, float], rewarded_to: int, source: str) -> PreferencePair:
    """Chosen = the rewritten reply at turn h (its future: the rewrite's branch), rejected = the
    original reply (its future: the original dialogue), both rewarded up to turn `rewarded_to`
    (`common_horizon`); the prompt is the target's chat up to q_h."""
    return PreferencePair(
        target_prompt(original, turn, settings), [{"role": "assistant", "content": rewrite.turns[turn - 1].reply}],
        [{"role": "assistant", "content": original.turns[turn - 1].reply}], rewards[0], rewards[1],
        {"parent": original.rollout_id, "turn": turn, "chosen": rewrite.rollout_id, "rewrite_source": source,
         "rewarded_to_turn": rewarded_to})
