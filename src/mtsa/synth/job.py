"""`mtsa synth`: Think-before-Attack training data for the attacker (MTSA Stage 1).

For each goal and strategy a generator plays a strategy-conditioned attacker against the
target through the rollout engine, and the judge scores every reply. Successful dialogues
are kept (or all, labelled, with --keep-all), optionally cut down to the --top-k most
diverse, and written as SFT JSONL (see `synth/dataset.py`). Dialogues stream into a run
folder next to the output file (`<out>.run/`) so an interrupted synthesis resumes with
--resume; the JSONL itself is written atomically at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mtsa.atomic import write_jsonl_atomic
from mtsa.attacker.strategies import STRATEGIES
from mtsa.attacker.templates import TemplateAttacker
from mtsa.config import help_text
from mtsa.errors import MtsaError
from mtsa.goals.loaders import load_goals
from mtsa.judges.registry import check_judge
from mtsa.models.embedded import sentence_embeddings
from mtsa.models.registry import check_model, load_model
from mtsa.rollout.engine import Rollout
from mtsa.rollout.job import RolloutConfig, load_target_and_judge, run_into_folder
from mtsa.rollout.run_folder import CONFIG, RunFolder
from mtsa.synth.dataset import attacker_text, sft_example
from mtsa.synth.diversity import farthest_point, mean_pairwise_cosine

# on --resume; a larger --limit adds goals, and the dialogues kept are chosen again at the end
CHANGEABLE = ("out", "resume", "concurrency", "limit", "top_k", "keep_all")
STRATEGY_NAMES = ",".join(s.name for s in STRATEGIES)


@dataclass
class SynthConfig(RolloutConfig):
    """Settings of one data synthesis run."""

    command: ClassVar[str] = "synth"

    generator: str = field(default="embedded", metadata=help_text("model spec of the model playing the attacker"))
    offline_templates: bool = field(default=False, metadata=help_text(
        "compose attacker turns from the project's templates instead of a generator model (offline bootstrap)"))
    strategies: str = field(default=STRATEGY_NAMES, metadata=help_text(
        "comma-separated strategies, one dialogue each per goal"))
    out: str | None = field(default=None, metadata=help_text("SFT dataset to write (JSONL)"))
    top_k: int | None = field(default=None, metadata=help_text(
        "keep the K most diverse dialogues (all of them when fewer succeed)"))
    keep_all: bool = field(default=False, metadata=help_text("keep failed dialogues too (labelled success=false)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.out:
            raise MtsaError("--out FILE.jsonl is required")
        unknown = set(self.strategy_list()) - {s.name for s in STRATEGIES}
        if unknown or not self.strategy_list():
            raise MtsaError(f"unknown strategies {sorted(unknown)}; choose from {STRATEGY_NAMES}")
        if self.top_k is not None and self.top_k < 1:
            raise MtsaError("--top-k must be >= 1")

    @staticmethod
    def saved_settings(out: str) -> Path:
        """The run folder sits next to the dataset: `<out>.run/`."""
        return run_folder_of(Path(out)) / CONFIG

    def strategy_list(self) -> list[str]:
        return [name.strip() for name in self.strategies.split(",") if name.strip()]


def run_folder_of(out: Path) -> Path:
    return out.with_name(out.name + ".run")


def run_synth(config: SynthConfig) -> dict:
    """Synthesize, select and write the dataset; return the selection report."""
    goals = load_goals(config.goals, config.limit)
    rollouts = [Rollout(f"{goal.id}:{strategy}", goal, strategy)
                for goal in goals for strategy in config.strategy_list()]
    generator_spec = None if config.offline_templates else check_model(config.generator)
    target_spec = check_model(config.target)
    check_judge(config.judge)
    out = Path(config.out)
    if not out.parent.is_dir():
        raise MtsaError(f"output folder '{out.parent}' does not exist")
    folder = RunFolder(run_folder_of(out))
    folder.check_can_start(config.resolved(str(out)), config.resume, CHANGEABLE)
    if out.exists() and not config.resume:
        raise MtsaError(f"'{out}' exists; choose another --out or delete it")

    if generator_spec is None:
        generator, shared = TemplateAttacker(config.turns), None
    else:
        generator = load_model(generator_spec)
        shared = (generator_spec, generator)
    target, judge = load_target_and_judge(target_spec, config.judge, shared)
    folder.start(config.resolved(str(out)))
    dialogues = run_into_folder(folder, rollouts, generator, target, judge, config.settings())

    kept = [d for d in dialogues if not d.format_failure and
            (config.keep_all or d.first_unsafe_turn(config.threshold) is not None)]
    if not kept:
        raise MtsaError(f"no usable dialogues out of {len(dialogues)} (all failed or format failures); "
                        "try --keep-all, more goals or a stronger generator")
    vectors = sentence_embeddings([attacker_text(d) for d in kept])
    top_k = config.top_k or len(kept)
    if top_k > len(kept):  # how many attacks succeed is known only now
        print(f"--top-k {top_k}: only {len(kept)} usable dialogues, so all of them are kept")
    chosen = farthest_point(vectors, top_k) if top_k < len(kept) else list(range(len(kept)))
    selected = [kept[i] for i in chosen]
    write_jsonl_atomic(out, [sft_example(d, config.turns, config.threshold) for d in selected])

    report = {
        "dialogues": len(dialogues),
        "format_failures": sum(d.format_failure for d in dialogues),
        "successful": sum(d.first_unsafe_turn(config.threshold) is not None for d in dialogues),
        "kept": len(kept),
        "selected": len(selected),
        "mean_pairwise_cosine_before": round(mean_pairwise_cosine(vectors), 4),
        "mean_pairwise_cosine_after": round(mean_pairwise_cosine(vectors[chosen]), 4),
        "strategies_before": dict(Counter(d.assigned_strategy for d in kept)),
        "strategies_after": dict(Counter(d.assigned_strategy for d in selected)),
        "generator": generator.name, "target": target.name, "judge": judge.name, "out": str(out),
    }
    folder.write_summary(report)
    for key, value in report.items():
        print(f"{key:>28}: {value}")
    return report
