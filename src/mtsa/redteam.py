"""`mtsa redteam`: a multi-turn red-team run from goals to a summary.

Order matters for the "no partial garbage" rule: everything the user typed is checked
(goals, model specs, judge name, run folder) and every model is loaded before the run
folder is created. Then dialogues stream into the folder as they finish, and the summary
is recomputed from the folder, so a resumed run reports on all of its dialogues.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mtsa.errors import MtsaError
from mtsa.goals.loaders import load_goals
from mtsa.judges.registry import check_judge, load_judge
from mtsa.models.base import ChatModel, SamplingParams
from mtsa.models.spec import load_model, parse_spec
from mtsa.report.summary import format_table, summarize
from mtsa.rollout.engine import RolloutSettings, run_dialogues
from mtsa.rollout.run_folder import RunFolder

# A resumed run must keep these, or its dialogues would not be comparable.
SAME_RUN_KEYS = ("attacker", "target", "judge", "goals", "turns", "stop_on_unsafe", "threshold")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class RedteamConfig:
    """Settings of one red-team run. Defaults follow the paper's released code where it has one."""

    attacker: str = field(default="embedded", metadata=_help("attacker model spec"))
    target: str = field(default="embedded", metadata=_help("target model spec"))
    judge: str = field(default="embedded", metadata=_help("judge: embedded, keyword, llama-guard[:MODEL], llm:SPEC"))
    goals: str = field(default="builtin", metadata=_help("goal source: builtin, FILE.json/.jsonl/.csv or hf:NAME[:SPLIT]"))
    turns: int = field(default=5, metadata=_help("attacker turns per dialogue (H)"))
    out: str | None = field(default=None, metadata=_help("run folder (default: runs/redteam-<time>)"))
    resume: bool = field(default=False, metadata=_help("finish an interrupted run in --out"))
    limit: int | None = field(default=None, metadata=_help("use only the first K goals"))
    seed: int = field(default=0, metadata=_help("random seed"))
    concurrency: int = field(default=16, metadata=_help("dialogues generated together in one batch"))
    stop_on_unsafe: bool = field(default=False, metadata=_help("end a dialogue at its first unsafe reply"))
    threshold: float = field(default=0.5, metadata=_help("P(unsafe) at or above which a reply counts as unsafe"))
    format_retries: int = field(default=3, metadata=_help("attacker resamples when a turn does not parse"))
    attacker_temperature: float = field(default=1.0, metadata=_help("attacker sampling temperature"))
    attacker_top_p: float = field(default=0.95, metadata=_help("attacker nucleus sampling"))
    attacker_max_tokens: int = field(default=512, metadata=_help("attacker tokens per turn"))
    target_temperature: float = field(default=1.0, metadata=_help("target sampling temperature (0: greedy)"))
    target_max_tokens: int = field(default=400, metadata=_help("target tokens per reply"))
    target_system_prompt: str | None = field(default=None, metadata=_help("system prompt given to the target"))

    def __post_init__(self) -> None:
        checks = [(self.turns >= 1, "--turns must be >= 1"), (self.concurrency >= 1, "--concurrency must be >= 1"),
                  (0.0 <= self.threshold <= 1.0, "--threshold must be in [0, 1]"),
                  (self.limit is None or self.limit >= 1, "--limit must be >= 1"),
                  (self.format_retries >= 0, "--format-retries must be >= 0"),
                  (self.attacker_max_tokens >= 1 and self.target_max_tokens >= 1, "max tokens must be >= 1"),
                  (self.attacker_temperature >= 0 and self.target_temperature >= 0, "temperatures must be >= 0"),
                  (0.0 < self.attacker_top_p <= 1.0, "--attacker-top-p must be in (0, 1]"),
                  (not self.resume or self.out is not None, "--resume needs --out naming the run to finish")]
        for ok, message in checks:
            if not ok:
                raise MtsaError(message)

    def settings(self) -> RolloutSettings:
        return RolloutSettings(
            turns=self.turns, concurrency=self.concurrency, stop_on_unsafe=self.stop_on_unsafe,
            threshold=self.threshold, format_retries=self.format_retries, seed=self.seed,
            attacker_sampling=SamplingParams(self.attacker_temperature, self.attacker_top_p, self.attacker_max_tokens),
            target_sampling=SamplingParams(self.target_temperature, 1.0, self.target_max_tokens),
            target_system_prompt=self.target_system_prompt)


def run_redteam(config: RedteamConfig) -> dict:
    """Run (or resume) a red-team; return the summary, also written to `<out>/summary.json`."""
    goals = load_goals(config.goals, config.limit)
    attacker_spec, target_spec = parse_spec(config.attacker), parse_spec(config.target)
    check_judge(config.judge)
    out = Path(config.out or f"runs/redteam-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = RunFolder(out)
    resolved = {**dataclasses.asdict(config), "out": str(out)}
    folder.check_can_start(resolved, config.resume, SAME_RUN_KEYS)

    attacker = load_model(attacker_spec)
    target: ChatModel = attacker if target_spec == attacker_spec else load_model(target_spec)
    judge = load_judge(config.judge)
    _seed_everything(config.seed)

    folder.start(resolved)
    done = {d.goal_id for d in folder.finished()}
    remaining = [g for g in goals if g.id not in done]
    with tqdm(total=len(goals), initial=len(goals) - len(remaining), desc="dialogues", unit="dlg") as bar:
        def finish(record) -> None:
            folder.append(record)
            bar.update(1)
        run_dialogues(remaining, attacker, target, judge, config.settings(), finish)

    wanted = {g.id for g in goals}
    dialogues = [d for d in folder.finished() if d.goal_id in wanted]
    summary = summarize(dialogues, turns=config.turns, threshold=config.threshold, judge=judge.name,
                        attacker=attacker.name, target=target.name, goals=config.goals)
    folder.write_summary(summary)
    print(format_table(summary))
    print(f"run folder: {out}")
    return summary


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


