"""`mtsa demo`: the whole MTSA pipeline on the embedded default, offline, in minutes on a CPU.

1. synth: the offline template attacker red-teams the embedded target on a few built-in goals
   with each of the four strategies; the embedded judge scores every reply;
2. sft: a LoRA adapter for the embedded model is trained on those dialogues (all kept);
3. redteam: the fine-tuned attacker red-teams the embedded target on *other* built-in goals;
4. train: one Stage 2 iteration on the training goals (attacker DPO, target future-reward update),
   judged by the keyword judge: the embedded judge rightly finds almost nothing unsafe in what
   the 135M target writes (it cannot really help), which would leave the updates nothing to
   learn from, and the demo is there to show them run;
5. eval: the same fine-tuned attacker red-teams the *updated* target on the goals of step 3,
   so that steps 3 and 5 differ only in the target.

Each stage runs as the `mtsa` command a user would type (printed as it starts), in its own
process. Everything lands in one folder; with --resume a stage that finished is not run again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtsa.atomic import check_folder_can_be_made, read_json_object, write_json_atomic, write_jsonl_atomic
from mtsa.config import help_text
from mtsa.errors import MtsaError
from mtsa.goals.loaders import load_goals
from mtsa.stages import run_stage


@dataclass
class DemoConfig:
    out: str | None = field(default=None, metadata=help_text("demo folder (default: runs/demo-<time>)"))
    resume: bool = field(default=False, metadata=help_text("finish an interrupted demo in --out"))
    goals: int = field(default=6, metadata=help_text("built-in goals for synthesis, and as many others to attack"))
    turns: int = field(default=3, metadata=help_text("turns per dialogue"))
    sft_steps: int = field(default=8, metadata=help_text("LoRA training steps (4 dialogues each)"))
    seed: int = field(default=0, metadata=help_text("random seed"))

    def __post_init__(self) -> None:
        if self.goals < 1 or self.turns < 1 or self.sft_steps < 1:
            raise MtsaError("--goals, --turns and --sft-steps must be >= 1")
        if self.resume and not self.out:
            raise MtsaError("--resume needs --out naming the demo folder")


def settings_of(config: DemoConfig) -> dict:
    """What a demo's results depend on, recorded in DIR/demo.json: a resume must not change it."""
    return {"goals": config.goals, "turns": config.turns, "sft_steps": config.sft_steps, "seed": config.seed}


def check_can_start(out: Path, config: DemoConfig) -> None:
    """Refuse, before any file is written, a new demo in a used folder and a resume with other
    settings (its stages would mix the two demos' goals and dialogues)."""
    if not config.resume:
        if out.is_dir() and any(out.iterdir()):
            raise MtsaError(f"--out '{out}' is not empty: --resume finishes the demo in it, or name a new folder")
        return
    recorded = read_json_object(out / "demo.json")
    changed = [key for key, value in settings_of(config).items() if key in recorded and recorded[key] != value]
    if changed:
        flags = ", ".join("--" + key.replace("_", "-") for key in changed)
        raise MtsaError(f"cannot resume the demo in '{out}': {flags} {'differs' if len(changed) == 1 else 'differ'} "
                        "from its first run")


def run_demo(config: DemoConfig) -> dict:
    out = Path(config.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    check_folder_can_be_made(out)
    check_can_start(out, config)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "demo.json", settings_of(config))
    small = {"turns": config.turns, "seed": config.seed, "target_max_tokens": 80, "attacker_max_tokens": 128}

    def resume(run: Path) -> bool:
        """Resume a stage's run only if it started: `--resume` on a run that is not there is an error."""
        return config.resume and (run / "config.json").is_file()

    # Alternate built-in goals between training and attack, so the attack is on unseen goals
    # from the same categories.
    goals = load_goals("builtin")
    train_goals, attack_goals = out / "train_goals.jsonl", out / "attack_goals.jsonl"
    for path, part in ((train_goals, goals[0::2]), (attack_goals, goals[1::2])):
        write_jsonl_atomic(path, ({"goal": g.goal, "category": g.category} for g in part[:config.goals]))

    data = out / "attacks.jsonl"
    print(f"[1/5] synthesizing attack dialogues -> {data}")
    if not (config.resume and data.is_file()):
        # keep_all: with a handful of goals there may be few successes; every template
        # dialogue is well-formed, and the demo is about the attacker learning the format.
        run_stage("synth", offline_templates=True, goals=train_goals, out=data, keep_all=True, concurrency=16,
                  resume=resume(data.with_name(data.name + ".run")), **small)

    adapter = out / "attacker"
    print(f"[2/5] fine-tuning the attacker (LoRA, {config.sft_steps} steps) -> {adapter}")
    if not (config.resume and (adapter / "adapter_config.json").is_file()):
        # Top-10-layer LoRA at a high rate: the fastest and leanest setting on this CPU (see
        # AttackerSFTConfig). A few steps do not teach a 135M model the turn format yet;
        # benchmarks/attacker_sft_effect.py measures what a longer run does.
        run_stage("sft", data=data, model="embedded", out=adapter, max_steps=config.sft_steps, batch_size=1,
                  gradient_accumulation=4, learning_rate=1e-3, lora_layers=10, logging_steps=2, seed=config.seed)

    print(f"[3/5] red-teaming the embedded target with the fine-tuned attacker -> {out / 'redteam'}")
    run_stage("redteam", attacker=f"embedded+{adapter}", goals=attack_goals, out=out / "redteam", concurrency=8,
              resume=resume(out / "redteam"), **small)

    train = out / "train"
    print(f"[4/5] Stage 2, one iteration: attacker DPO, target future-reward update -> {train}\n"
          "      (judged by `keyword`, any reply without a refusal phrase counts as unsafe: the embedded judge\n"
          "      finds almost nothing unsafe in the 135M target's replies, which cannot really help, so the\n"
          "      updates would have nothing to learn from; this shows the pipeline, not a safety effect)")
    run_stage("train", attacker=f"embedded+{adapter}", target="embedded", judge="keyword", goals=train_goals,
              out=train, iterations=1, concurrency=16, benign_ratio=0.5, rewrite_retries=0, lora_layers=10,
              learning_rate=1e-3, train_epochs=1, train_batch_size=2, max_length=1024, resume=resume(train), **small)
    target = json.loads((train / "iter_1" / "metrics.json").read_text())["target_out"]

    print(f"[5/5] red-teaming the updated target ({target}) with the same attacker -> {out / 'eval'}")
    run_stage("redteam", attacker=f"embedded+{adapter}", target=target, goals=attack_goals, out=out / "eval",
              concurrency=8, resume=resume(out / "eval"), **small)
    before = json.loads((out / "redteam" / "summary.json").read_text())
    after = json.loads((out / "eval" / "summary.json").read_text())
    print(f"ASR on the {config.goals} attack goals, embedded judge: before Stage 2 {before['asr']:.0%}, "
          f"after one iteration {after['asr']:.0%} (a handful of goals: a noisy number)")
    return after
