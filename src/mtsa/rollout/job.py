"""What every rollout job shares (`mtsa redteam`, `mtsa synth`): its settings, loading the
models, and streaming dialogues into a resumable run folder.

Order matters for the "no partial garbage" rule: everything the user typed is checked
(goals, model specs, judge name, run folder) and every model is loaded before the run
folder is created.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tqdm import tqdm

from mtsa.config import help_text
from mtsa.errors import MtsaError
from mtsa.judges.base import Judge
from mtsa.judges.registry import load_judge
from mtsa.models.base import ChatModel, SamplingParams
from mtsa.models.registry import load_model
from mtsa.models.spec import ModelSpec
from mtsa.rollout.engine import Rollout, RolloutSettings, run_dialogues
from mtsa.rollout.records import DialogueRecord
from mtsa.rollout.run_folder import CONFIG, STARTED_IN, RunFolder


@dataclass
class RolloutConfig:
    """Settings every rollout job has. Defaults follow the paper's released code where it has one."""

    command: ClassVar[str]  # the `mtsa` command of the job, recorded in its run folder

    target: str = field(default="embedded", metadata=help_text("target model spec"))
    judge: str = field(default="embedded", metadata=help_text(
        "judge: embedded[?requests=FILE], refusal, keyword, llama-guard[:MODEL], llm:SPEC (docs/judges.md)"))
    goals: str = field(default="builtin", metadata=help_text(
        "goal source: builtin, FILE.json/.jsonl/.csv, hf:NAME[:SPLIT] or hf:NAME:CONFIG:SPLIT"))
    turns: int = field(default=5, metadata=help_text("attacker turns per dialogue (H)"))
    resume: bool = field(default=False, metadata=help_text(
        "finish an interrupted run in --out, with the settings it was started with"))
    limit: int | None = field(default=None, metadata=help_text("use only the first K goals"))
    seed: int = field(default=0, metadata=help_text("random seed"))
    concurrency: int = field(default=16, metadata=help_text("dialogues generated together in one batch"))
    stop_on_unsafe: bool = field(default=False, metadata=help_text("end a dialogue at its first unsafe reply"))
    threshold: float = field(default=0.5, metadata=help_text("P(unsafe) at or above which a reply counts as unsafe"))
    format_retries: int = field(default=3, metadata=help_text("attacker resamples when a turn does not parse"))
    attacker_prefill: bool = field(default=True, metadata=help_text(
        "begin each attacker turn with 'Thinking k:' for the model to continue (HF attackers)"))
    attacker_temperature: float = field(default=1.0, metadata=help_text("attacker sampling temperature"))
    attacker_top_p: float = field(default=0.95, metadata=help_text("attacker nucleus sampling"))
    attacker_max_tokens: int = field(default=512, metadata=help_text("attacker tokens per turn"))
    target_temperature: float = field(default=1.0, metadata=help_text("target sampling temperature (0: greedy)"))
    target_max_tokens: int = field(default=400, metadata=help_text("target tokens per reply"))
    target_system_prompt: str | None = field(default=None, metadata=help_text("system prompt given to the target"))

    def __post_init__(self) -> None:
        checks = [(self.turns >= 1, "--turns must be >= 1"), (self.concurrency >= 1, "--concurrency must be >= 1"),
                  (0.0 <= self.threshold <= 1.0, "--threshold must be in [0, 1]"),
                  (self.limit is None or self.limit >= 1, "--limit must be >= 1"),
                  (0 <= self.seed < 2**32, "--seed must be in [0, 2^32)"),
                  (self.format_retries >= 0, "--format-retries must be >= 0"),
                  (self.attacker_max_tokens >= 1 and self.target_max_tokens >= 1, "max tokens must be >= 1"),
                  (self.attacker_temperature >= 0 and self.target_temperature >= 0, "temperatures must be >= 0"),
                  (0.0 < self.attacker_top_p <= 1.0, "--attacker-top-p must be in (0, 1]"),
                  (not self.resume or getattr(self, "out", None) is not None, "--resume needs --out naming the run")]
        for ok, message in checks:
            if not ok:
                raise MtsaError(message)

    def settings(self) -> RolloutSettings:
        return RolloutSettings(
            turns=self.turns, concurrency=self.concurrency, stop_on_unsafe=self.stop_on_unsafe,
            threshold=self.threshold, format_retries=self.format_retries, seed=self.seed,
            attacker_sampling=SamplingParams(self.attacker_temperature, self.attacker_top_p, self.attacker_max_tokens),
            target_sampling=SamplingParams(self.target_temperature, 1.0, self.target_max_tokens),
            target_system_prompt=self.target_system_prompt, attacker_prefill=self.attacker_prefill)

    @staticmethod
    def saved_settings(out: str) -> Path:
        """Where a run folder keeps the settings it was started with (`config.build` reads them on --resume)."""
        return Path(out) / CONFIG

    def resolved(self, out: str) -> dict:
        """The settings as written to the run folder's config.json, with the directory they were
        given in (a resume from elsewhere would read other files under the same relative names)."""
        return {**dataclasses.asdict(self), "out": out, "command": self.command, STARTED_IN: os.getcwd()}


def load_target_and_judge(target_spec: ModelSpec, judge_name: str,
                          attacker: tuple[ModelSpec, ChatModel] | None = None) -> tuple[ChatModel, Judge]:
    """Load the target (sharing the attacker's instance when both name the same model) and the judge."""
    if attacker is not None and attacker[0] == target_spec:
        target = attacker[1]
    else:
        target = load_model(target_spec)
    return target, load_judge(judge_name)


def run_into_folder(folder: RunFolder, rollouts: list[Rollout], attacker: ChatModel, target: ChatModel,
                    judge: Judge, settings: RolloutSettings) -> list[DialogueRecord]:
    """Run the rollouts not finished yet, appending each dialogue as it ends; return all of these
    rollouts' dialogues in the folder (earlier runs' included, so a resumed run reports on all).
    The folder is locked meanwhile: a second process resuming it is refused."""
    _seed_everything(settings.seed)
    with folder.lock():
        done = {d.rollout_id for d in folder.finished()}
        remaining = [r for r in rollouts if r.id not in done]
        with tqdm(total=len(rollouts), initial=len(rollouts) - len(remaining), desc="dialogues", unit="dlg") as bar:
            def finish(record: DialogueRecord) -> None:
                folder.append(record)
                bar.update(1)

            run_dialogues(remaining, attacker, target, judge, settings, finish)
        wanted = {r.id for r in rollouts}
        return [d for d in folder.finished() if d.rollout_id in wanted]


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # a phase's seed in `mtsa train` is --seed x 1000 + ...
    torch.manual_seed(seed)
