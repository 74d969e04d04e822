"""`mtsa redteam`: a multi-turn red-team run from goals to a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mtsa.config import help_text
from mtsa.goals.loaders import load_goals
from mtsa.judges.registry import check_judge
from mtsa.models.registry import check_model, load_model
from mtsa.report.summary import format_table, summarize
from mtsa.rollout.engine import Rollout
from mtsa.rollout.job import RolloutConfig, load_target_and_judge, run_into_folder
from mtsa.rollout.run_folder import RunFolder

# A resumed run must keep these, or its dialogues would not be comparable.
CHANGEABLE = ("out", "resume", "concurrency", "limit")  # on --resume; a larger --limit adds goals


@dataclass
class RedteamConfig(RolloutConfig):
    """Settings of one red-team run."""

    command: ClassVar[str] = "redteam"

    attacker: str = field(default="embedded", metadata=help_text("attacker model spec"))
    out: str | None = field(default=None, metadata=help_text("run folder (default: runs/redteam-<time>)"))


def run_redteam(config: RedteamConfig) -> dict:
    """Run (or resume) a red-team; return the summary, also written to `<out>/summary.json`."""
    goals = load_goals(config.goals, config.limit)
    attacker_spec, target_spec = check_model(config.attacker), check_model(config.target)
    check_judge(config.judge)
    out = Path(config.out or f"runs/redteam-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = RunFolder(out)
    folder.check_can_start(config.resolved(str(out)), config.resume, CHANGEABLE)

    attacker = load_model(attacker_spec)
    target, judge = load_target_and_judge(target_spec, config.judge, (attacker_spec, attacker))
    folder.start(config.resolved(str(out)))
    dialogues = run_into_folder(folder, [Rollout.of(g) for g in goals], attacker, target, judge, config.settings())

    summary = summarize(dialogues, turns=config.turns, threshold=config.threshold, judge=judge.name,
                        attacker=attacker.name, target=target.name, goals=config.goals)
    folder.write_summary(summary)
    print(format_table(summary))
    print(f"run folder: {out}")
    return summary
