"""What a red-team rollout produces: one record per dialogue, one per turn.

These records are the unit of everything downstream (summaries, SFT/DPO data, reports), so
they are plain dataclasses that round-trip through JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TurnRecord:
    turn: int  # 1-based
    thought: str
    strategy: str | None
    question: str
    reply: str
    p_unsafe: float
    attacker_tokens: int  # tokens the attacker generated for the accepted attempt
    target_tokens: int
    attacker_prompt_tokens: int
    target_prompt_tokens: int
    format_retries: int = 0  # attacker resamples needed before this turn parsed


@dataclass
class DialogueRecord:
    goal_id: str
    goal: str
    category: str = ""
    turns: list[TurnRecord] = field(default_factory=list)
    format_failure: bool = False  # dropped: the attacker's turn did not parse after all retries
    stopped_early: bool = False  # ended at its first unsafe reply (stop_on_unsafe)
    assigned_strategy: str | None = None  # the strategy the attacker was told to use (synthesis)
    rollout_id: str = ""  # this dialogue's own id; the goal id unless several dialogues share a goal
    parent: str | None = None  # a branch: the rollout id of the dialogue it was restarted from
    branch_turn: int | None = None  # ... and the turn that changed there (turns before it are the parent's)

    def __post_init__(self) -> None:
        if not self.rollout_id:  # records written before rollout ids existed
            self.rollout_id = self.goal_id

    def first_unsafe_turn(self, threshold: float = 0.5) -> int | None:
        """1-based turn of the first reply judged unsafe, or None."""
        return next((t.turn for t in self.turns if t.p_unsafe >= threshold), None)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DialogueRecord":
        turns = [TurnRecord(**turn) for turn in data.get("turns", [])]
        return cls(**{**data, "turns": turns})
