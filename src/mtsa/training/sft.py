"""`mtsa sft`: supervised fine-tuning of the attacker on Think-before-Attack dialogues.

TRL's SFTTrainer does the training (so `accelerate launch` gives DDP, DeepSpeed ZeRO and FSDP
unchanged); we only hand it token ids with a loss mask over the attacker's turns (see
`chat_tokens.py`): the system prompt and the target's replies are context, never targets.
LoRA by default, full fine-tuning with --full-finetune. The output folder holds the adapter
(or model) and the tokenizer, usable as `embedded+DIR` / `hf:BASE+DIR` (LoRA) or `hf:DIR`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from mtsa.atomic import write_json_atomic
from mtsa.config import help_text
from mtsa.errors import MtsaError
from mtsa.models.dtype import choose_dtype, chosen_dtypes
from mtsa.training.common import (
    TrainingSettings,
    base_model_path,
    check_trainable_base,
    check_training_settings,
    checkpointing_argument,
    cpu_only,
    floored_warmup,
    is_chat,
    load_chat_tokenizer,
    lora_config,
    new_output_folder,
    train_and_save,
)


@dataclass
class AttackerSFTConfig(TrainingSettings):
    """Settings of one attacker SFT run. Reference (7B, GPUs, full fine-tuning): 3 epochs, lr 1e-5,
    cosine, warmup 0.1, effective batch 8, max length 2500. The defaults (LoRA, lr 2e-4; the
    shared settings in `TrainingSettings`) are for CPUs and small models. benchmarks/RESULTS.md
    has the measured step times."""

    data: str | None = field(default=None, metadata=help_text("SFT JSONL written by `mtsa synth`"))
    model: str = field(default="embedded", metadata=help_text("base model spec: embedded or hf:PATH_OR_ID"))
    out: str | None = field(default=None, metadata=help_text("folder for the adapter/model and tokenizer"))
    full_finetune: bool = field(default=False, metadata=help_text("train all weights instead of a LoRA adapter"))
    epochs: float = field(default=3.0, metadata=help_text("training epochs"))
    learning_rate: float = field(default=2e-4, metadata=help_text("peak learning rate (reference full FT: 1e-5)"))
    batch_size: int = field(default=2, metadata=help_text("dialogues per device per step"))
    gradient_accumulation: int = field(default=4, metadata=help_text(
        "steps per update (effective batch = batch_size x this x devices)"))
    max_length: int = field(default=2048, metadata=help_text("tokens per dialogue; longer ones are truncated"))

    def __post_init__(self) -> None:
        if not self.data or not self.out:
            raise MtsaError("--data FILE.jsonl and --out DIR are required")
        check_trainable_base(self.model, "")
        check_training_settings(self)


def load_sft_rows(path: str):
    """The dataset's rows as a `datasets.Dataset`; one-line errors for a missing, empty or malformed file."""
    import datasets

    from mtsa.goals.loaders import read_rows

    rows = read_rows(Path(path))
    if not rows:
        raise MtsaError(f"{path}: no rows")
    for n, row in enumerate(rows, start=1):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not is_chat(messages):
            raise MtsaError(f"{path}: row {n} has no 'messages' list (chat messages with text 'role' and "
                            "'content'), as `mtsa synth` writes")
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            raise MtsaError(f"{path}: row {n} has no assistant (attacker) message to learn from")
    return datasets.Dataset.from_list(rows)


def run_sft(config: AttackerSFTConfig) -> Path:
    """Train and save; return the output folder."""
    out = new_output_folder(config.out)
    trainer, rows, path = build_trainer(config)
    result = train_and_save(trainer, out)
    if trainer.is_world_process_zero():
        write_json_atomic(out / "mtsa_sft.json", {**dataclasses.asdict(config), "base_model_path": path,
                                                  "dtypes": chosen_dtypes(), "train_loss": result.training_loss,
                                                  "steps": result.global_step, "rows": len(rows)})
        print(json.dumps({"out": str(out), "train_loss": round(result.training_loss, 4),
                          "steps": result.global_step}))
    return out


def build_trainer(config: AttackerSFTConfig):
    """(TRL SFTTrainer ready to train, the data rows, the base model path)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from mtsa.training.chat_tokens import tokenize_with_assistant_mask

    rows = load_sft_rows(config.data)
    path = base_model_path(config.model)
    tokenizer = load_chat_tokenizer(path, "the attacker must be a chat model")
    tokenized = rows.map(lambda row: tokenize_with_assistant_mask(tokenizer, row["messages"]),
                         remove_columns=rows.column_names)

    gpu = torch.cuda.is_available()
    requested = config.dtype
    if requested == "auto" and config.full_finetune and not gpu:  # the optimizer updates these weights
        requested = "float32"
    dtype = choose_dtype(requested, "cuda" if gpu else "cpu", f"{config.model} (training)").torch_dtype
    # LoRA keeps its own weights in float32 (peft casts them), whatever the base weights' dtype.
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    peft_config = None if config.full_finetune else lora_config(config, model)
    args = SFTConfig(
        output_dir=str(config.out), num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        max_length=config.max_length, max_steps=config.max_steps, seed=config.seed,
        logging_steps=config.logging_steps, **checkpointing_argument(SFTConfig, config.gradient_checkpointing),
        # Mixed precision on GPUs only: on a CPU autocast would redo in bf16 what the base dtype decided.
        bf16=gpu and dtype == torch.bfloat16, fp16=gpu and dtype == torch.float16, save_strategy="no",
        dataloader_pin_memory=gpu, use_cpu=cpu_only(), report_to="none")
    trainer_class = floored_warmup(SFTTrainer if gpu else _labelled_logits_trainer())
    trainer = trainer_class(model=model, args=args, train_dataset=tokenized, processing_class=tokenizer,
                            peft_config=peft_config)
    return trainer, rows, path


def _labelled_logits_trainer() -> type:
    """TRL's SFTTrainer with a loss that computes logits only where a label is set (built here
    because trl is imported lazily).

    Why: only the attacker's turns carry labels (the system prompt and the target's replies,
    most of a dialogue, are context), yet off GPUs TRL's fused LM head scores every position
    against the whole vocabulary, forward and backward, a large share of a CPU step. On GPUs
    TRL's own head already skips unlabelled positions, in chunks.
    """
    from trl import SFTTrainer

    class LabelledLogitsSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = labelled_positions_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as TRL does: DDP then averages the gradients
            return (loss, None) if return_outputs else loss

    return LabelledLogitsSFTTrainer


def labelled_positions_loss(model, inputs: dict, num_items_in_batch=None):
    """Next-token cross-entropy summed over labelled positions, divided by `num_items_in_batch`
    (the labelled tokens of the whole accumulated batch, as the Trainer counts them) or by this
    batch's count. The model projects onto the vocabulary only the positions that predict a
    label (their union over the batch's rows): `logits_to_keep` takes a tensor of positions."""
    import torch

    targets = inputs["labels"][:, 1:]
    positions = (targets != -100).any(dim=0).nonzero().flatten()
    forward = {key: value for key, value in inputs.items() if key != "labels"}
    logits = model(**forward, use_cache=False, logits_to_keep=positions).logits
    wanted = targets[:, positions]
    total = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), wanted.flatten(), ignore_index=-100,
                                              reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (wanted != -100).sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)
