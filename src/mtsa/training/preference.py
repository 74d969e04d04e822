"""One preference update of a policy (MTSA Stage 2): the attacker's DPO, or the target's
future-reward regression.

Both run on TRL's `DPOTrainer` (so `accelerate launch` gives DDP, DeepSpeed ZeRO and FSDP
unchanged), on pairs in TRL's conversational format (`prompt`, `chosen`, `rejected`) as
`training/pairs.py` writes them. The reference policy is the model as it stands at the start
of the update; its log-probs are computed once per dataset (`precompute_ref_log_probs`), not
at every step. A LoRA adapter from an earlier update (`adapter`) is trained further, and TRL
keeps a frozen copy of it as the reference.

`objective="future_reward"` replaces DPO's loss by the regression of the released MTSA code,

    L = ( [log pi(w|s)/pi_ref(w|s) - log pi(l|s)/pi_ref(l|s)] - eta * (R(w) - R(l)) )^2,

eta = 1 / (2 * beta) (beta 0.01: eta 50), with each pair's rewards summed over the rest of its
dialogue (`chosen_reward`, `rejected_reward`). The log-ratio difference is pulled to eta times
the reward difference: a reward gap of 1 asks for 50 nats, the scale DPO itself reaches; with
eta = 1 the target would be a nat or so per reply, which moves nothing. The achieved margin
and its target are logged at every logging step (`future_reward/margin`, `.../target`), and,
after training, their distributions over the pairs in the summary (`margins`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mtsa.atomic import write_json_atomic
from mtsa.config import help_text
from mtsa.errors import MtsaError
from mtsa.models.dtype import choose_dtype, chosen_dtypes
from mtsa.training.common import (
    PAIRS_FOLDER,
    TrainingSettings,
    base_model_path,
    check_trainable_base,
    check_training_settings,
    checkpointing_argument,
    cpu_only,
    dataset_in_files,
    floored_warmup,
    is_chat,
    load_chat_tokenizer,
    lora_config,
    new_output_folder,
    train_and_save,
)

OBJECTIVES = ("dpo", "future_reward")


@dataclass
class PreferenceConfig(TrainingSettings):
    """Settings of one preference update. Reference (7B, GPUs, full fine-tuning): 1 epoch, lr
    1.41e-5; attacker beta 0.1 (DPO), target beta 0.01 (future reward, eta 50). The defaults
    (LoRA, a higher learning rate) are for CPUs and small models."""

    data: str | None = field(default=None, metadata=help_text("pairs JSONL (prompt, chosen, rejected; rewards)"))
    model: str = field(default="embedded", metadata=help_text("base model spec: embedded or hf:PATH_OR_ID"))
    adapter: str | None = field(default=None, metadata=help_text(
        "LoRA adapter folder to train further (the previous update's); none: a new adapter"))
    out: str | None = field(default=None, metadata=help_text("folder for the adapter and tokenizer"))
    objective: str = field(default="dpo", metadata=help_text(
        "dpo (the attacker; the target's no-future-reward baseline) or future_reward (the target)"))
    beta: float | None = field(default=None, metadata=help_text(
        "DPO's beta; future_reward: eta = 1 / (2 beta) (default: 0.1 for dpo, 0.01 for future_reward, as `mtsa "
        "train` uses them)"))
    epochs: float = field(default=1.0, metadata=help_text("training epochs"))
    learning_rate: float = field(default=5e-5, metadata=help_text("peak learning rate (reference full FT: 1.41e-5)"))
    batch_size: int = field(default=2, metadata=help_text("pairs per device per step"))
    gradient_accumulation: int = field(default=1, metadata=help_text("steps per update"))
    max_length: int = field(default=2048, metadata=help_text(
        "tokens of prompt + completion; a longer pair loses its prompt's oldest turns"))

    def __post_init__(self) -> None:
        if not self.data or not self.out:
            raise MtsaError("--data FILE.jsonl and --out DIR are required")
        if self.objective not in OBJECTIVES:
            raise MtsaError(f"--objective must be one of {', '.join(OBJECTIVES)}, got '{self.objective}'")
        check_trainable_base(self.model, "; give the adapter to train further with --adapter")
        if self.adapter and not (Path(self.adapter) / "adapter_config.json").is_file():
            raise MtsaError(f"--adapter '{self.adapter}' is not an adapter folder (no adapter_config.json)")
        if self.beta is None:
            self.beta = 0.01 if self.objective == "future_reward" else 0.1
        if self.beta <= 0:
            raise MtsaError("--beta must be positive")
        check_training_settings(self)


def eta(beta: float) -> float:
    """The future-reward loss's nats of log-ratio margin asked per unit of reward difference."""
    return 1.0 / (2.0 * beta)


def load_pairs(path: str, objective: str) -> list[dict]:
    """The pairs (prompt, chosen, rejected, and reward_margin for the future-reward objective);
    one-line errors for a missing, empty or malformed file."""
    from mtsa.goals.loaders import read_rows

    rows = read_rows(Path(path))
    if not rows:
        raise MtsaError(f"{path}: no pairs")
    kept = []
    for n, row in enumerate(rows, start=1):
        if not (isinstance(row, dict) and all(is_chat(row.get(k)) for k in ("prompt", "chosen", "rejected"))):
            raise MtsaError(f"{path}: row {n} needs 'prompt', 'chosen' and 'rejected' lists of chat messages "
                            "(each with text 'role' and 'content')")
        pair = {k: row[k] for k in ("prompt", "chosen", "rejected")}
        if objective == "future_reward":
            try:
                pair["reward_margin"] = float(row["chosen_reward"]) - float(row["rejected_reward"])
            except (KeyError, TypeError, ValueError):
                pair["reward_margin"] = math.nan
            if not math.isfinite(pair["reward_margin"]):  # a NaN target would train every weight to NaN
                raise MtsaError(f"{path}: row {n} needs finite numbers 'chosen_reward' and 'rejected_reward' "
                                "for the future-reward objective")
        kept.append(pair)
    return kept


def run_preference(config: PreferenceConfig) -> dict:
    """Train and save; return the summary written to OUT/mtsa_preference.json."""
    out = new_output_folder(config.out)
    trainer, pairs, path = build_trainer(config)
    result = train_and_save(trainer, out)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    summary = {**dataclasses.asdict(config), "base_model_path": path, "dtypes": chosen_dtypes(),
               "train_loss": result.training_loss, "steps": result.global_step, "pairs": len(pairs),
               "shortened_pairs": trainer.shortened_pairs, "log": logged}
    if config.objective == "future_reward":
        summary["margins"] = margin_summary(trainer.achieved_margins())
    trainer.accelerator.wait_for_everyone()  # every process is done with the pairs' files
    if trainer.is_world_process_zero():
        shutil.rmtree(out / PAIRS_FOLDER, ignore_errors=True)
        write_json_atomic(out / "mtsa_preference.json", summary)
        print(json.dumps({"out": str(out), "objective": config.objective,
                          "train_loss": round(result.training_loss, 4), "steps": result.global_step,
                          "pairs": len(pairs)}))
    return summary


def build_trainer(config: PreferenceConfig):
    """(a TRL DPOTrainer, or its future-reward subclass, ready to train; the pairs; the base model path)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    rows = load_pairs(config.data, config.objective)
    path = base_model_path(config.model)
    tokenizer = load_chat_tokenizer(path, "preference pairs are chat conversations")
    rows, shortened = fit_pairs(rows, tokenizer, config.max_length)
    gpu = torch.cuda.is_available()
    dtype = choose_dtype(config.dtype, "cuda" if gpu else "cpu", f"{config.model} (training)").torch_dtype
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    peft_config = None
    if config.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.adapter, is_trainable=True)
    else:
        peft_config = lora_config(config, model)
    args = DPOConfig(
        output_dir=str(config.out), num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        max_length=config.max_length, max_steps=config.max_steps, seed=config.seed, beta=config.beta,
        logging_steps=config.logging_steps, precompute_ref_log_probs=True,
        **checkpointing_argument(DPOConfig, config.gradient_checkpointing),
        bf16=gpu and dtype == torch.bfloat16, fp16=gpu and dtype == torch.float16, save_strategy="no",
        dataloader_pin_memory=gpu, use_cpu=cpu_only(), report_to="none")
    # After the arguments, which join the processes of a data-parallel run: each process loads
    # the dataset the first one writes.
    pairs = dataset_in_files(rows, Path(config.out) / PAIRS_FOLDER, args)
    trainer_class = floored_warmup(future_reward_trainer() if config.objective == "future_reward" else DPOTrainer)
    trainer = trainer_class(model=model, args=args, train_dataset=pairs, processing_class=tokenizer,
                            peft_config=peft_config)
    trainer.shortened_pairs = shortened
    return trainer, pairs, path


def fit_pairs(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Pairs whose prompt and longer completion exceed `max_length` tokens lose their prompt's
    oldest turns (never the system message or the latest one), as the chat backends cut a long
    history at generation; return the pairs and how many were shortened. A pair whose latest
    message alone is too long would lose its whole completion, so it is refused."""
    from mtsa.models.causal_lm import render_chat
    from mtsa.models.context import truncate_oldest

    fitted, shortened = [], 0
    for row in rows:
        longest = max(len(render_chat(tokenizer, row["prompt"] + row[k])) for k in ("chosen", "rejected"))
        extra = longest - len(render_chat(tokenizer, row["prompt"]))

        def fits(prompt: list) -> bool:
            return len(render_chat(tokenizer, prompt)) + extra <= max_length

        prompt = truncate_oldest(row["prompt"], fits, "preference pairs")
        if not fits(prompt):
            raise MtsaError(f"a pair needs more than --max-length {max_length} tokens even with only its system "
                            "prompt and latest message; raise --max-length")
        shortened += prompt is not row["prompt"]
        fitted.append({**row, "prompt": prompt})
    return fitted, shortened


def future_reward_trainer() -> type:
    """TRL's DPOTrainer with MTSA's future-reward regression as its loss (built here because trl
    is imported lazily). TRL still tokenizes the pairs, computes the reference log-probs once,
    handles adapters and distributed training; only the loss differs."""
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    class RewardMarginCollator(DataCollatorForPreference):
        """TRL's preference collator, also carrying each pair's reward margin R(w) - R(l)."""

        def torch_call(self, examples):
            import torch

            batch = super().torch_call(examples)
            if "reward_margin" in examples[0]:
                batch["reward_margin"] = torch.tensor([float(e["reward_margin"]) for e in examples])
            return batch

    class FutureRewardTrainer(DPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)  # the reference log-probs are computed here, with TRL's collator
            collator = self.data_collator
            self.data_collator = RewardMarginCollator(
                pad_token_id=collator.pad_token_id, max_length=collator.max_length,
                truncation_mode=collator.truncation_mode, pad_to_multiple_of=collator.pad_to_multiple_of)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "reward_margin" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "reward_margin"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Trainer's public hook, so that a TRL release that renames its internals cannot
            # silently bring DPO's loss back.
            mode = "train" if self.model.training else "eval"
            margin, target = self.margin_and_target(model, inputs)
            loss = future_reward_loss(margin, target)
            margins, targets = self.accelerator.gather(margin.detach()), self.accelerator.gather(target)
            self._metrics[mode]["future_reward/margin"].append(margins.mean().item())
            self._metrics[mode]["future_reward/target"].append(targets.mean().item())
            self._metrics[mode]["future_reward/abs_error"].append((margins - targets).abs().mean().item())
            return (loss, None) if return_outputs else loss

        def margin_and_target(self, model, inputs):
            """Each pair's log-ratio margin under `model` and the margin its rewards ask for."""
            chosen, rejected = completion_logps(model, inputs).chunk(2)
            margin = (chosen - inputs["ref_chosen_logps"]) - (rejected - inputs["ref_rejected_logps"])
            return margin, inputs["reward_margin"].to(margin.device) * eta(self.beta)

        def achieved_margins(self) -> list[tuple[float, float]]:
            """(achieved, asked) margin of every pair once training is over: one forward pass over
            the pairs, the reference's log-probs being stored with them already."""
            import torch

            model, pairs = self.model_wrapped, []
            model.eval()
            with torch.no_grad():
                for inputs in self.get_eval_dataloader(self.train_dataset):
                    margin, target = self.margin_and_target(model, self._prepare_inputs(inputs))
                    margins, targets = self.accelerator.gather_for_metrics((margin, target))
                    pairs += zip(margins.tolist(), targets.tolist())
            return pairs

    return FutureRewardTrainer


def margin_summary(pairs: list[tuple[float, float]]) -> dict:
    """How far the update got: the distribution over the pairs of the margins asked (eta * dR,
    nats) and of those achieved by the trained model, and the share of pairs moved to the side
    their target asks for."""
    import numpy as np

    if not pairs:
        return {}
    achieved, target = np.asarray(pairs, dtype=np.float64).T

    def spread(values: np.ndarray) -> dict:
        quantiles = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0])
        return dict(zip(("min", "p10", "median", "p90", "max"), (round(float(q), 3) for q in quantiles)))

    return {"pairs": len(pairs), "target": spread(target), "achieved": spread(achieved),
            "same_sign": round(float(np.mean(np.sign(achieved) == np.sign(target))), 3),
            "mean_abs_error": round(float(np.mean(np.abs(achieved - target))), 3)}


def future_reward_loss(margin, target):
    """Mean over pairs of (achieved log-ratio margin - target margin)^2, target = eta * (R(w) - R(l))."""
    return ((margin - target) ** 2).mean()


def completion_logps(model, inputs: dict):
    """Each row's summed log-probability of its completion tokens (`completion_mask`), the
    quantity TRL's reference log-probs hold; logits are computed only at the positions that
    predict a completion token (their union over the batch), not over the whole vocabulary at
    every position."""
    ids, completion = inputs["input_ids"], inputs["completion_mask"][:, 1:].bool()
    positions = completion.any(dim=0).nonzero().flatten()
    logits = model(input_ids=ids, attention_mask=inputs["attention_mask"], use_cache=False,
                   logits_to_keep=positions).logits
    targets = ids[:, 1:][:, positions]
    logps = logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logps * completion[:, positions]).sum(dim=-1)
