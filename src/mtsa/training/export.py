"""`mtsa export`: a trained adapter (an iteration's target or attacker) as standalone weights.

The adapter is merged into its base model and saved with the tokenizer, so that plain
`transformers` loads it (`AutoModelForCausalLM.from_pretrained(DIR)`) with no peft and no mtsa.
A model card (README.md) says what it is: the base model, the Stage 2 run and iteration it
comes from, its training data sizes, the judge, and the numbers the run measured, each with
where it was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtsa.errors import MtsaError, first_line


def export(adapter_dir: str, out: str) -> Path:
    """Merge and save; return the output folder."""
    source, target = Path(adapter_dir), Path(out)
    summary_path = source / "mtsa_preference.json"
    if not (source / "adapter_config.json").is_file() or not summary_path.is_file():
        raise MtsaError(f"'{source}' is not an adapter written by `mtsa train` or `mtsa preference` "
                        "(expected adapter_config.json and mtsa_preference.json)")
    if target.exists() and any(target.iterdir()):
        raise MtsaError(f"--out '{target}' is not empty; choose a new folder")
    summary = json.loads(summary_path.read_text())
    base = summary["base_model_path"]
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
    (target / "README.md").write_text(model_card(source, summary), encoding="utf-8")
    print(f"merged {source} into {base} -> {target}")
    return target


def model_card(source: Path, summary: dict) -> str:
    """A short, honest model card from what the run folder recorded."""
    iteration_dir = source.parent
    metrics = _read(iteration_dir / "metrics.json")
    config = _read(iteration_dir.parent / "config.json")
    role = source.name if source.name in ("attacker", "target") else "model"
    lines = [
        f"# {role} model, MTSA Stage 2 ({iteration_dir.name})", "",
        f"- Base model: `{summary.get('model')}` (`{summary.get('base_model_path')}`), LoRA merged into the "
        "weights.",
        f"- Update: `{summary.get('objective')}`, beta {summary.get('beta')}, {summary.get('pairs')} preference "
        f"pairs, {summary.get('steps')} steps, final training loss {summary.get('train_loss')}.",
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
    lines += ["", "Held-out ASR and over-refusal are not measured by training; evaluate this model with "
              "`mtsa redteam --target hf:THIS_FOLDER` on goals it was not trained on.", ""]
    return "\n".join(lines)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
