"""`mtsa train`: MTSA Stage 2, adversarial iterative optimisation of an attacker and a target.

Iteration t, in RUN/iter_<t>/ (phases in order; each one's output marks it done):
1. attacker_sampling/  dialogues of attacker R_t against target T_t (a resumable run folder);
2. attacker_branches/  from each successful dialogue, its attacker turn h redrawn at several
                       temperatures and rolled out to H; ranked by R_adv -> attacker_pairs.jsonl;
3. attacker/           DPO update of R_t on those pairs -> R_{t+1} (a LoRA adapter);
4. target_sampling/    fresh dialogues of R_{t+1} against T_t;
5. rewrites.jsonl      a safe rewrite of each successful dialogue's first unsafe reply;
   target_branches/    each rewrite rolled out to H; rewards R_tgt -> target_pairs.jsonl, plus
                       over-refusal guard pairs (benign look-alike prompts: answering beats refusing);
6. target/             future-reward update of T_t on those pairs -> T_{t+1};
7. metrics.json        what the iteration did, measured.
The reference of each update is the model at its start. Updates run as their own `mtsa
preference` processes (so generation and training never hold memory together, and a GPU user
can wrap them in `accelerate launch`); a crash loses at most the phase in progress, and inside
sampling phases not even finished dialogues.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mtsa.adversarial.guard import guard_pairs, shipped_benign_prompts
from mtsa.adversarial.resampling import attacker_branches, target_turn
from mtsa.adversarial.target_rewrite import Rewrite, safe_rewrites, source_counts
from mtsa.atomic import read_json_object, write_json_atomic, write_jsonl_atomic
from mtsa.config import help_text
from mtsa.errors import MtsaError
from mtsa.goals.loaders import load_goals, read_rows
from mtsa.judges.registry import check_judge, load_judge
from mtsa.models.adapters import local_adapter
from mtsa.models.generation_server import GenerationServer
from mtsa.models.registry import check_model, load_model
from mtsa.models.spec import ModelSpec
from mtsa.report.summary import summarize
from mtsa.rewards.registry import check_helpfulness, load_helpfulness
from mtsa.rollout.engine import Branch, Rollout, RolloutSettings, goal_of
from mtsa.rollout.job import RolloutConfig, run_into_folder
from mtsa.rollout.records import DialogueRecord
from mtsa.rollout.run_folder import RunFolder
from mtsa.training.pairs import PreferencePair, attacker_pairs, common_horizon, target_pair, target_rewards
from mtsa.training.preference import eta

# on --resume: how a run goes, not what it produces; and the update's sizes that its errors ask to change
CHANGEABLE = ("out", "resume", "concurrency", "update_launcher", "generation_server", "max_length",
              "train_batch_size")


@dataclass
class TrainConfig(RolloutConfig):
    """Settings of one Stage 2 run. Paper: 3 iterations, H = 5, attacker temperatures 0.6-1.2,
    attacker DPO beta 0.1, target beta 0.01 (eta 50), lr 1.41e-5 with full fine-tuning on GPUs."""

    command: ClassVar[str] = "train"

    attacker: str = field(default="embedded", metadata=help_text(
        "attacker model spec (the Stage 1 attacker: embedded+DIR or hf:BASE+DIR)"))
    out: str | None = field(default=None, metadata=help_text("run folder (default: runs/train-<time>)"))
    iterations: int = field(default=3, metadata=help_text("adversarial iterations"))
    attacker_temperatures: str = field(default="0.6,0.8,1.0,1.2", metadata=help_text(
        "temperatures at which the chosen attacker turn is redrawn"))
    attacker_safe_below: float = field(default=0.3, metadata=help_text(
        "the attacker turn redrawn is the last one before the first unsafe reply with P(unsafe) <= this"))
    reference_attacks: str | None = field(default=None, metadata=help_text(
        "the Stage 1 attacker's data (SFT JSONL from `mtsa synth`) as the diversity reference; default: the "
        "data the --attacker adapter was trained on (its mtsa_sft.json), else the iteration's own questions"))
    rewrite_retries: int = field(default=2, metadata=help_text("redraws of a safe rewrite still judged unsafe"))
    rewrite_fallback: str | None = field(default=None, metadata=help_text(
        "model spec of a stronger refusal writer for rewrites still unsafe (default: refusal templates)"))
    helpfulness: str = field(default="embedded", metadata=help_text(
        "helpfulness scorer of the target's reward: embedded, rm:PATH_OR_ID[?OPTIONS] or llm:SPEC"))
    target_objective: str = field(default="future_reward", metadata=help_text(
        "future_reward (MTSA) or dpo (the no-future-reward baseline: plain DPO on the same pairs)"))
    attacker_beta: float = field(default=0.1, metadata=help_text("attacker DPO beta"))
    target_beta: float = field(default=0.01, metadata=help_text(
        "target beta; future_reward: eta = 1 / (2 beta), the nats asked per unit of reward"))
    baseline_beta: float = field(default=0.1, metadata=help_text(
        "beta of the target's plain DPO when --target-objective is dpo (the no-future-reward baseline)"))
    benign: str | None = field(default=None, metadata=help_text(
        "benign look-alike prompts for the over-refusal guard (default: the shipped set)"))
    benign_ratio: float = field(default=0.5, metadata=help_text(
        "over-refusal guard prompts per target pair (a prompt the target never answers fully makes no pair)"))
    learning_rate: float = field(default=1e-3, metadata=help_text(
        "learning rate of the target's LoRA update (chosen for the embedded model; 7B models want less: "
        "examples/stage2/paper-7b.yaml)"))
    attacker_learning_rate: float = field(default=1e-4, metadata=help_text(
        "learning rate of the attacker's LoRA DPO update (a higher one broke the embedded attacker's turn "
        "format: benchmarks/RESULTS.md)"))
    train_epochs: float = field(default=3.0, metadata=help_text("epochs of each update (a few dozen pairs per "
                                                                 "iteration on a CPU: several passes)"))
    train_batch_size: int = field(default=2, metadata=help_text("pairs per step"))
    lora_layers: int = field(default=0, metadata=help_text("LoRA on the top N layers only (0: all)"))
    max_length: int = field(default=2048, metadata=help_text("tokens per pair (prompt + completion)"))
    update_launcher: str | None = field(default=None, metadata=help_text(
        "command that runs each update's process instead of this Python, e.g. 'accelerate launch "
        "--config_file examples/accelerate/ddp.yaml' (it is given '-m mtsa.cli preference ...')"))
    generation_server: str | None = field(default=None, metadata=help_text(
        "URL (.../v1) of a vLLM server holding the attacker's or the target's base model, started with "
        "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True: that model's rollouts go through it, "
        "each new checkpoint loaded as a LoRA adapter by name (the server must read the run folder's paths)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise MtsaError("--iterations must be >= 1")
        if self.target_objective not in ("future_reward", "dpo"):
            raise MtsaError("--target-objective must be future_reward or dpo")
        temperatures = self.temperatures()
        if not (temperatures and all(0 < t < math.inf for t in temperatures)  # NaN fails too
                and len({f"{t:g}" for t in temperatures}) == len(temperatures)):  # as branch ids name them
            raise MtsaError("--attacker-temperatures must be positive numbers that differ in their first 6 "
                            "digits, comma-separated")
        if self.benign_ratio < 0 or self.rewrite_retries < 0:
            raise MtsaError("--benign-ratio and --rewrite-retries must be >= 0")
        if self.learning_rate <= 0 or self.attacker_learning_rate <= 0:
            raise MtsaError("--learning-rate and --attacker-learning-rate must be positive")
        if min(self.attacker_beta, self.target_beta, self.baseline_beta) <= 0:
            raise MtsaError("--attacker-beta, --target-beta and --baseline-beta must be positive")
        # the updates' own settings, checked here rather than by the first update, after a phase of sampling
        if self.train_epochs <= 0 or self.train_batch_size < 1 or self.max_length < 1 or self.lora_layers < 0:
            raise MtsaError("--train-epochs, --train-batch-size and --max-length must be positive, --lora-layers >= 0")
        if not 0 <= self.attacker_safe_below <= 1:
            raise MtsaError("--attacker-safe-below must be in [0, 1]")
        if self.stop_on_unsafe:  # a branch cut at its first unsafe reply would lose the future its reward sums
            raise MtsaError("--stop-on-unsafe is for red-teaming: Stage 2 plays every dialogue to its last turn, "
                            "whose replies its rewards sum")
        if self.judge.partition("?")[0] == "refusal":
            raise MtsaError("--judge refusal scores P(refusal), not P(unsafe): Stage 2 needs a harm judge "
                            "(embedded, llama-guard, llm:SPEC or keyword)")
        if self.reference_attacks and not Path(self.reference_attacks).is_file():
            raise MtsaError(f"--reference-attacks '{self.reference_attacks}': file not found")
        from mtsa.stages import launcher_program

        launcher_program(self.update_launcher)

    def temperatures(self) -> list[float]:
        try:
            return [float(t) for t in self.attacker_temperatures.split(",") if t.strip()]
        except ValueError:
            raise MtsaError(f"--attacker-temperatures '{self.attacker_temperatures}': not numbers") from None


def run_train(config: TrainConfig) -> dict:
    """Run (or resume) Stage 2; return the last iteration's metrics."""
    goals = load_goals(config.goals, config.limit)
    attacker_spec, target_spec = trainable(config.attacker, "--attacker"), trainable(config.target, "--target")
    check_judge(config.judge)
    check_helpfulness(config.helpfulness)
    if config.rewrite_fallback:
        check_model(config.rewrite_fallback)
    server = GenerationServer(config.generation_server) if config.generation_server else None
    if server and not (server.serves(attacker_spec) or server.serves(target_spec)):
        raise MtsaError(f"--generation-server {config.generation_server} holds neither the attacker's nor the "
                        "target's base model")
    benign = load_goals(config.benign) if config.benign else shipped_benign_prompts()
    out = Path(config.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    RunFolder(out).check_can_start(config.resolved(str(out)), config.resume, CHANGEABLE)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").is_file():  # a resumed run keeps the record of how it started
        write_json_atomic(out / "config.json", config.resolved(str(out)))

    with RunFolder(out).lock():  # held by the update processes too
        return run_iterations(config, goals, benign, attacker_spec.text, target_spec.text, out)


def run_iterations(config: TrainConfig, goals, benign, attacker: str, target: str, out: Path) -> dict:
    metrics: dict = {}
    for iteration in range(1, config.iterations + 1):
        folder = out / f"iter_{iteration}"
        print(f"iteration {iteration} of {config.iterations} -> {folder}", flush=True)
        started_before = folder.is_dir() and any(folder.iterdir())
        folder.mkdir(exist_ok=True)
        metrics = read_metrics(folder) or {"iteration": iteration, "attacker_in": attacker, "target_in": target}
        if started_before and "target_update" not in metrics:
            metrics["resumed"] = True  # its *_seconds count only the work done by the process that finished it
        new_attacker = attacker_phase(config, goals, attacker, target, folder, metrics)
        new_target = target_phase(config, goals, benign, new_attacker, target, folder, metrics)
        metrics.update(attacker_out=new_attacker, target_out=new_target)
        write_json_atomic(folder / "metrics.json", metrics)
        print(f"iteration {iteration}: " + json.dumps({k: metrics.get(k) for k in (
            "attacker_sampling_asr", "attacker_pairs", "target_sampling_asr", "target_pairs", "guard_pairs")}))
        attacker, target = new_attacker, new_target
    print(f"run folder: {out}; final attacker {attacker}, final target {target}")
    return metrics


def trainable(spec_text: str, flag: str) -> ModelSpec:
    """A spec whose weights Stage 2 can update: a local model, with at most a LoRA adapter."""
    spec = check_model(spec_text)
    if spec.kind == "openai":
        raise MtsaError(f"{flag} '{spec_text}' is an API model; Stage 2 trains it, so it must be local "
                        "(embedded[+ADAPTER] or hf:PATH_OR_ID[+ADAPTER])")
    if spec.adapter and local_adapter(spec.adapter) is None:  # `mtsa preference` trains a folder further
        raise MtsaError(f"{flag} '{spec_text}': no folder '{spec.adapter}' here; Stage 2 trains its adapter "
                        "further, so the adapter must be a local folder (a Hub adapter: huggingface-cli download "
                        f"{spec.adapter} --local-dir DIR, then name DIR)")
    return spec


def with_adapter_spec(spec_text: str, adapter: Path) -> str:
    """The spec of the same base model with `adapter` (replacing any adapter it had)."""
    body, _, query = spec_text.partition("?")
    base = body.split("+", 1)[0]
    return f"{base}+{adapter}" + (f"?{query}" if query else "")


def read_metrics(folder: Path) -> dict:
    """The iteration's metrics written so far (a resumed run keeps its finished phases' numbers)."""
    return read_json_object(folder / "metrics.json")


def phase_settings(config: TrainConfig, folder: Path, phase: int) -> RolloutSettings:
    """The rollout settings of one sampling phase: its own seed, so that the iterations' and the
    phases' dialogues of a goal are fresh draws, not replays of the same random streams."""
    return dataclasses.replace(config.settings(), seed=config.seed * 1000 + 10 * iteration_of(folder) + phase)


def iteration_of(folder: Path) -> int:
    return int(folder.name.split("_")[-1])


def attacker_phase(config: TrainConfig, goals, attacker: str, target: str, folder: Path, metrics: dict) -> str:
    """Sample, branch, pair and update the attacker; return the new attacker's spec. The pairs are
    recorded in metrics.json before the update, so a run killed during the update resumes with
    the update itself, without loading models or scoring again."""
    out = folder / "attacker"
    settings = phase_settings(config, folder, 1)
    if "attacker_pairs" not in metrics:
        attacker_pairs_step(config, goals, attacker, target, folder, metrics, settings)
        write_json_atomic(folder / "metrics.json", metrics)
    if "attacker_update" not in metrics:
        started = time.perf_counter()
        metrics["attacker_update"] = update(config, folder / "attacker_pairs.jsonl", attacker, out, "dpo",
                                            config.attacker_beta, config.attacker_learning_rate, settings.seed)
        metrics["attacker_update_seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(folder / "metrics.json", metrics)
    return with_adapter_spec(attacker, out) if finished_update(out) else attacker


def attacker_pairs_step(config: TrainConfig, goals, attacker: str, target: str, folder: Path, metrics: dict,
                        settings: RolloutSettings) -> None:
    """The attacker phase up to its pairs, written to attacker_pairs.jsonl and counted in `metrics`."""
    started = time.perf_counter()
    models = load_models(config, attacker, target)
    dialogues, sampled_asr = sample(folder / "attacker_sampling", config, goals, models, settings, (attacker, target))
    branches = attacker_branches(dialogues, config.temperatures(), config.threshold, config.attacker_safe_below)
    children = run_branches(folder / "attacker_branches", config, branches, models, settings)
    reference, metrics["reference_attacks"] = reference_attacks(config, dialogues)
    pairs, skipped = attacker_pairs(children, reference, settings)
    write_pairs(folder / "attacker_pairs.jsonl", pairs)
    states = {b.branch.parent.rollout_id for b in branches}
    print(f"  attacker_pairs.jsonl: {len(pairs)} pairs from {len(states)} resampled turns, {skipped} skipped "
          "(candidates tied or cut short); a successful dialogue has a turn to resample only if a reply "
          f"before its first unsafe one scored P(unsafe) <= {config.attacker_safe_below}", flush=True)
    metrics.update(attacker_sampling_asr=sampled_asr, attacker_states=len(states),
                   attacker_pairs=len(pairs), attacker_states_skipped=skipped,
                   attacker_reward_chosen=mean([p.chosen_reward for p in pairs]),  # R_adv, z-scored per state
                   attacker_reward_rejected=mean([p.rejected_reward for p in pairs]),
                   attacker_sampling_seconds=round(time.perf_counter() - started, 1))
    release(models)


def target_phase(config: TrainConfig, goals, benign, attacker: str, target: str, folder: Path, metrics: dict) -> str:
    """Sample against the new attacker, rewrite, branch, reward, pair and update the target (the
    pairs recorded before the update, as in `attacker_phase`)."""
    out = folder / "target"
    settings = phase_settings(config, folder, 2)
    if "target_pairs" not in metrics:
        target_pairs_step(config, goals, benign, attacker, target, folder, metrics, settings)
        write_json_atomic(folder / "metrics.json", metrics)
    if "target_update" not in metrics:
        started = time.perf_counter()
        beta = config.target_beta if config.target_objective == "future_reward" else config.baseline_beta
        metrics["target_update"] = update(config, folder / "target_pairs.jsonl", target, out, config.target_objective,
                                          beta, config.learning_rate, settings.seed)
        metrics["target_update_seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(folder / "metrics.json", metrics)
    return with_adapter_spec(target, out) if finished_update(out) else target


def target_pairs_step(config: TrainConfig, goals, benign, attacker: str, target: str, folder: Path, metrics: dict,
                      settings: RolloutSettings) -> None:
    """The target phase up to its pairs, written to target_pairs.jsonl and counted in `metrics`."""
    started = time.perf_counter()
    models = load_models(config, attacker, target)
    dialogues, metrics["target_sampling_asr"] = sample(folder / "target_sampling", config, goals, models, settings,
                                                       (attacker, target))
    todo = [(d, turn) for d in dialogues if (turn := target_turn(d, config.threshold)) is not None]
    print(f"  rewrites.jsonl: safe rewrites of the first unsafe reply of {len(todo)} dialogues", flush=True)
    rewrites = load_or_make_rewrites(folder / "rewrites.jsonl", todo, models, config, settings)
    branches = [Rollout(f"{d.rollout_id}/rewrite{turn}", goal_of(d), d.assigned_strategy,
                        Branch(d, turn, reply=rewrite.reply)) for (d, turn), rewrite in zip(todo, rewrites)]
    children = {c.rollout_id: c for c in run_branches(folder / "target_branches", config, branches, models,
                                                      settings)}
    models["helpfulness"] = load_helpfulness(config.helpfulness)  # released with the phase's models
    kept = [(d, turn, children[b.id], w) for (d, turn), b, w in zip(todo, branches, rewrites) if b.id in children]
    horizons = [common_horizon(d, child) for d, _, child, _ in kept]
    rewards = target_rewards([(child, turn, last) for (_, turn, child, _), last in zip(kept, horizons)]
                             + [(d, turn, last) for (d, turn, _, _), last in zip(kept, horizons)],
                             models["helpfulness"], settings)  # one scoring call for both futures of every pair
    chosen, rejected = rewards[:len(kept)], rewards[len(kept):]
    pairs = [target_pair(d, child, turn, settings, (c, r), last, w.source)
             for (d, turn, child, w), c, r, last in zip(kept, chosen, rejected, horizons)]
    guard_prompts = math.floor(config.benign_ratio * len(pairs) + 0.5)  # halves up: 1 pair at 0.5 gets a prompt
    print(f"  over-refusal guard: {guard_prompts} benign look-alike prompts", flush=True)
    guard = guard_pairs(benign, guard_prompts, iteration_of(folder), config.seed, models["target"], settings)
    write_pairs(folder / "target_pairs.jsonl", pairs + guard)
    print(f"  target_pairs.jsonl: {len(pairs)} rewrite pairs and {len(guard)} guard pairs", flush=True)
    metrics.update(target_states=len(todo), target_pairs=len(pairs), guard_prompts=guard_prompts,
                   guard_pairs=len(guard), rewrite_sources=source_counts(rewrites),
                   target_futures_cut=sum(len(d.turns) != len(c.turns) for d, _, c, _ in kept),
                   target_reward_chosen=mean(chosen), target_reward_rejected=mean(rejected),
                   target_margin_asked=mean([(c - r) * eta(config.target_beta) for c, r in zip(chosen, rejected)])
                   if config.target_objective == "future_reward" else None,  # plain DPO asks for no margin
                   target_sampling_seconds=round(time.perf_counter() - started, 1))
    release(models)


def load_models(config: TrainConfig, attacker: str, target: str) -> dict:
    """The phase's attacker, target (one instance when the specs are equal) and judge. With a
    generation server, a model whose base it holds generates there, with its adapter loaded."""
    if config.generation_server:
        server = GenerationServer(config.generation_server)
        attacker, target = (server.spec_for(check_model(spec)) or spec for spec in (attacker, target))
    attacker_model = load_model(attacker)
    target_model = attacker_model if attacker == target else load_model(target)
    return {"attacker": attacker_model, "target": target_model, "judge": load_judge(config.judge)}


def release(models: dict) -> None:
    """Drop a phase's models before an update runs in its own process. On a GPU their memory also
    goes back to the device: PyTorch's allocator would keep it cached for this process, and the
    update's process on the same GPU would run out."""
    models.clear()
    gc.collect()
    torch = sys.modules.get("torch")  # not imported by a run of API models only
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def sample(path: Path, config: TrainConfig, goals, models: dict, settings: RolloutSettings,
           specs: tuple[str, str]) -> tuple[list[DialogueRecord], float]:
    """Fresh dialogues of the phase's attacker and target (resumed dialogue by dialogue) and their
    ASR; their red-team summary goes into the phase's folder."""
    print(f"  {path.name}: {len(goals)} dialogues of {specs[0]} against {specs[1]}", flush=True)
    folder = RunFolder(path)
    folder.start({**config.resolved(str(path)), "attacker": specs[0], "target": specs[1], "seed": settings.seed})
    dialogues = run_into_folder(folder, [Rollout.of(g) for g in goals], models["attacker"], models["target"],
                                models["judge"], settings)
    summary = summarize(dialogues, turns=config.turns, threshold=config.threshold, judge=config.judge,
                        attacker=specs[0], target=specs[1], goals=config.goals)
    folder.write_summary(summary)
    if not summary["asr"]:
        print(f"  {path.parent.name}/{path.name}: no successful attack in {len(dialogues)} dialogues (judge "
              f"{config.judge}), so no pairs come from them; continuing")
    return dialogues, summary["asr"]


def run_branches(path: Path, config: TrainConfig, branches: list[Rollout], models: dict,
                 settings: RolloutSettings) -> list[DialogueRecord]:
    if not branches:
        return []
    print(f"  {path.name}: {len(branches)} branches, each rolled out to turn {config.turns}", flush=True)
    folder = RunFolder(path)
    folder.start({**config.resolved(str(path)), "seed": settings.seed})
    return run_into_folder(folder, branches, models["attacker"], models["target"], models["judge"], settings)


def reference_attacks(config: TrainConfig, dialogues: list[DialogueRecord]):
    """The diversity reference and where it came from: the Stage 1 attacker's questions (the
    data given, or the data its adapter was trained on), else this iteration's own questions,
    which still keep the candidates of a state apart from what the attacker already asks."""
    from mtsa.rewards.adversarial import ReferenceAttacks

    data = Path(config.reference_attacks) if config.reference_attacks else stage1_data(config.attacker)
    if data is not None:
        return ReferenceAttacks(reference_questions(data)), str(data)
    texts = [t.question for d in dialogues for t in d.turns]
    return ReferenceAttacks(texts or ["(no reference attacks)"]), "the iteration's own attack questions"


def stage1_data(attacker: str) -> Path | None:
    """The SFT data the attacker's adapter was trained on, as its `mtsa sft` record names it; None
    when the attacker has no such record or the file is no longer where it was."""
    adapter = check_model(attacker).adapter
    record = Path(adapter) / "mtsa_sft.json" if adapter else None
    if record is None or not record.is_file():
        return None
    data = read_json_object(record).get("data")
    return Path(data) if data and Path(data).is_file() else None


def reference_questions(path: Path) -> list[str]:
    """The attack questions of an SFT file (`mtsa synth`): every assistant message that parses."""
    from mtsa.attacker.format import parse_attack

    questions = []
    for row in read_rows(path):
        for message in (row.get("messages", []) if isinstance(row, dict) else []):
            if message.get("role") == "assistant" and (attack := parse_attack(message.get("content", ""))):
                questions.append(attack.question)
    if not questions:
        raise MtsaError(f"--reference-attacks '{path}': no attacker turns found (expected `mtsa synth` SFT JSONL)")
    return questions


def load_or_make_rewrites(path: Path, todo, models: dict, config: TrainConfig,
                          settings: RolloutSettings) -> list[Rewrite]:
    if path.is_file():
        rows = read_rows(path)
        if len(rows) == len(todo):
            return [Rewrite(**row) for row in rows]
    fallback = load_model(config.rewrite_fallback) if config.rewrite_fallback and todo else None
    rewrites = safe_rewrites(todo, models["target"], models["judge"], settings, retries=config.rewrite_retries,
                             fallback=fallback)
    write_jsonl_atomic(path, (dataclasses.asdict(r) for r in rewrites))
    return rewrites


def write_pairs(path: Path, pairs: list[PreferencePair]) -> None:
    write_jsonl_atomic(path, (p.to_json() for p in pairs))


def update(config: TrainConfig, pairs_path: Path, model: str, out: Path, objective: str, beta: float,
           learning_rate: float, seed: int) -> dict:
    """One preference update in its own `mtsa preference` process; no pairs, no update (said so).
    The seed is the phase's, so the iterations' updates do not all shuffle their pairs in one order.
    Every step is logged: an update here is often a few steps, and steps after the last logged
    one leave no entry of their own in the log that metrics.json keeps."""
    from mtsa.stages import run_stage

    if out.exists() and not finished_update(out):
        shutil.rmtree(out)  # an update interrupted before it finished: never used, run again if there are pairs
    if not pairs_path.read_text(encoding="utf-8").strip():
        print(f"  no pairs in {pairs_path}: {out.name} is not updated this iteration")
        return {"skipped": "no pairs"}
    if not out.exists():  # else it finished but the run stopped before recording it: keep it
        spec = check_model(model)
        adapter = {"adapter": spec.adapter} if spec.adapter else {}
        base = model.partition("?")[0].split("+", 1)[0]
        run_stage("preference", launcher=config.update_launcher, data=pairs_path, model=base, out=out,
                  objective=objective, beta=beta, learning_rate=learning_rate, epochs=config.train_epochs,
                  batch_size=config.train_batch_size, lora_layers=config.lora_layers,
                  max_length=config.max_length, seed=seed, logging_steps=1, **adapter)
    summary = read_json_object(out / "mtsa_preference.json")
    return {k: summary[k] for k in ("train_loss", "steps", "pairs", "margins", "log") if k in summary}


def finished_update(out: Path) -> bool:
    """An update's folder is a checkpoint once `mtsa preference` has written its record, which it
    does last: an adapter without one is from an update killed while saving."""
    return (out / "mtsa_preference.json").is_file()


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None

