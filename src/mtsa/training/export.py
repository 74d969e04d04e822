"""`mtsa export`: a trained adapter (an iteration's target or attacker) as standalone weights.

The adapter is merged into its base model and saved with the tokenizer, so that plain
`transformers` loads it (`AutoModelForCausalLM.from_pretrained(DIR)`) with no peft and no mtsa.
A model card (README.md) says what it is: the base model, the Stage 2 run and iteration it
comes from, its training data sizes, the judge, and the numbers the run measured, each with
where it was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtsa.atomic import read_json_object
from mtsa.errors import MtsaError, first_line
from mtsa.training.common import new_output_folder


def export(adapter_dir: str, out: str, evaluations: Sequence[str] = ()) -> Path:
    """Merge and save; return the output folder. `evaluations` are `mtsa redteam` and `mtsa
    over-refusal` run folders of this checkpoint, whose attack success rates and over-refusal
    the model card reports."""
    source, target = Path(adapter_dir), Path(out)
    summary_path = source / "mtsa_preference.json"
    if not (source / "adapter_config.json").is_file() or not summary_path.is_file():
        raise MtsaError(f"'{source}' is not an adapter written by `mtsa train` or `mtsa preference` "
                        "(expected adapter_config.json and mtsa_preference.json)")
    new_output_folder(out)
    measured = [(Path(run), read_evaluation(Path(run), source)) for run in evaluations]
    summary = read_json_object(summary_path)
    base = summary.get("base_model_path")
    if not isinstance(base, str):
        raise MtsaError(f"{summary_path} names no base model (base_model_path): not written by `mtsa preference`?")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise MtsaError(f"could not load the base model '{base}': {first_line(exc)}") from None
    merged = PeftModel.from_pretrained(model, str(source)).merge_and_unload()
    target.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "README.md").write_text(model_card(source, summary, measured), encoding="utf-8")
    print(f"merged {source} into {base} -> {target}")
    return target


def read_evaluation(run: Path, adapter: Path) -> dict:
    """The summary of a red-team or over-refusal run of this checkpoint; one line when it is not one."""
    from mtsa.models.spec import parse_spec

    summary = read_json_object(run / "summary.json")
    role = role_of(adapter)
    if not isinstance(summary.get(role), str):
        raise MtsaError(f"--evaluation '{run}' is not a finished `mtsa redteam` run folder of this {role} (or "
                        f"`mtsa over-refusal` run of a target) with a summary.json")
    evaluated = parse_spec(summary[role]).adapter
    if evaluated is None or Path(evaluated).resolve() != adapter.resolve():
        raise MtsaError(f"--evaluation '{run}' has {role} '{summary[role]}', not the checkpoint {adapter}")
    return summary


def role_of(adapter: Path) -> str:
    """An iteration's `attacker/` is evaluated as a red-team run's attacker; anything else as its target."""
    return "attacker" if adapter.name == "attacker" else "target"


def model_card(source: Path, summary: dict, measured: Sequence[tuple[Path, dict]] = ()) -> str:
    """A short, honest model card from what the run folder recorded, and from the red-team runs
    of this checkpoint the user gave (each number with its judge, goals and run)."""
    iteration_dir = source.parent
    metrics = read_json_object(iteration_dir / "metrics.json")
    config = read_json_object(iteration_dir.parent / "config.json")
    role = role_of(source)
    lines = [
        f"# {role} model, MTSA Stage 2 ({iteration_dir.name})", "",
        f"- Base model: `{summary.get('model')}` (`{summary.get('base_model_path')}`), LoRA merged into the "
        "weights.",
        f"- Update: `{summary.get('objective')}`, beta {summary.get('beta')}, {summary.get('pairs')} preference "
        f"pairs, {summary.get('steps')} steps, final training loss {_rounded(summary.get('train_loss'))}.",
    ]
    if config:
        lines.append(f"- Run: {config.get('iterations')} iterations of {config.get('turns')} turns, goals "
                     f"`{config.get('goals')}`, judge `{config.get('judge')}`, helpfulness "
                     f"`{config.get('helpfulness')}`.")
    if metrics:
        lines += ["", "## Measured during the run", "",
                  f"Attack success rates of the run's own sampling dialogues (judge `{config.get('judge', '?')}`, "
                  "training goals, not a held-out evaluation):",
                  f"- attacker sampling (attacker in vs target in): {metrics.get('attacker_sampling_asr')}",
                  f"- target sampling (updated attacker vs target in): {metrics.get('target_sampling_asr')}",
                  f"- target pairs {metrics.get('target_pairs')}, over-refusal guard pairs "
                  f"{metrics.get('guard_pairs')}, rewrite sources {metrics.get('rewrite_sources')}"]
    if margins := summary.get("margins"):
        lines.append(f"- Future-reward margins of the trained model over its {margins['pairs']} pairs (nats): "
                     f"asked median {margins['target']['median']}, achieved median {margins['achieved']['median']}; "
                     f"{margins['same_sign']:.0%} moved the way their target asks.")
    attacks = [(run, result) for run, result in measured if "asr" in result]
    refusals = [(run, result) for run, result in measured if "over_refusal" in result]
    if attacks:
        other = "target" if role == "attacker" else "attacker"
        lines += ["", "## Measured by red-teaming this checkpoint", ""]
        for run, result in attacks:
            held_out = "the training goals, not held out" if result.get("goals") == config.get("goals") else "goals"
            lines.append(f"- ASR **{result['asr']:.1%}** (P(unsafe) >= {result.get('threshold')}, judge "
                         f"`{result.get('judge')}`): {result.get('n_dialogues')} dialogues judged, "
                         f"{result.get('format_failures')} dropped for format failures; {held_out} "
                         f"`{result.get('goals')}`; {other} `{result.get(other)}`; run `{run}`.")
    else:
        lines += ["", f"Held-out ASR is not measured by training; red-team with this checkpoint as `--{role} "
                  f"{summary.get('model')}+{source}` on goals it was not trained on, and export again with "
                  "`--evaluation RUN` to report it here."]
    if refusals:
        lines += ["", "## Over-refusal of this checkpoint (benign prompts refused)", ""]
        for run, result in refusals:
            label = f" labelled `{result['label']}`" if result.get("label") else ""
            lines.append(f"- **{result['over_refusal']:.1%}** refused (P(refusal) >= {result.get('threshold')}, judge "
                         f"`{result.get('judge')}`; keyword {result.get('over_refusal_keyword', 0):.1%}): "
                         f"{result.get('n_prompts')} prompts of `{result.get('prompts')}`{label}, one turn each; "
                         f"run `{run}`.")
    elif role == "target":
        lines += ["", f"Over-refusal is not measured by training; measure it with `mtsa over-refusal --target "
                  f"{summary.get('model')}+{source} --prompts FILE` (benign prompts it was not trained on, e.g. "
                  "XSTest's with `--label safe`) and export again with `--evaluation RUN`."]
    return "\n".join(lines + [""])


def _rounded(value):
    """A loss as a person reads it (4 significant digits); anything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else value
