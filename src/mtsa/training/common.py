"""What the trainers share (`sft.py`, `preference.py`): the base model's path, its tokenizer,
LoRA settings, the warm-up of short updates, the output folder, and training then saving."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from mtsa.atomic import check_folder_can_be_made
from mtsa.config import help_text
from mtsa.errors import MtsaError, first_line
from mtsa.models.dtype import check_dtype_name
from mtsa.models.registry import check_model


@dataclass(kw_only=True)  # keyword-only: each trainer's own data, model and out stay its first positional fields
class TrainingSettings:
    """The settings both trainers have, with one meaning (each trainer's config adds its data,
    model, length and rate settings). LoRA without dropout, and the base weights in the dtype the
    hardware computes fastest, are what make CPU training practical; adapting only the top layers
    (`lora_layers`) also stops back-propagation early."""

    lora_r: int = field(default=16, metadata=help_text("LoRA rank of a new adapter"))
    lora_alpha: int = field(default=32, metadata=help_text("LoRA alpha of a new adapter"))
    lora_dropout: float = field(default=0.0, metadata=help_text(
        "LoRA dropout of a new adapter (each adapted layer then draws a mask: slow on CPU)"))
    lora_target_modules: str = field(default="all-linear", metadata=help_text(
        "LoRA target modules (comma-separated or all-linear)"))
    lora_layers: int = field(default=0, metadata=help_text(
        "put LoRA only on the top N transformer layers (0: all); back-propagation then stops at the lowest one"))
    dtype: str = field(default="auto", metadata=help_text(
        "base weights' dtype: auto (bfloat16 on GPUs and on CPUs with AMX, else float32; float32 when all "
        "weights train on a CPU), bfloat16, float16, float32"))
    lr_scheduler: str = field(default="cosine", metadata=help_text("learning-rate schedule"))
    warmup_ratio: float = field(default=0.1, metadata=help_text(
        "share of steps spent warming up, rounded down (a short update has none)"))
    max_steps: int = field(default=-1, metadata=help_text("stop after N updates (-1: run all epochs)"))
    seed: int = field(default=0, metadata=help_text("random seed"))
    logging_steps: int = field(default=5, metadata=help_text("log the loss every N updates"))
    gradient_checkpointing: bool = field(default=False, metadata=help_text("trade compute for memory (large models)"))


def base_model_path(spec_text: str) -> str:
    spec = check_model(spec_text)
    if spec.kind == "embedded":
        from mtsa.models.embedded import chat_model_dir

        return str(chat_model_dir())
    return spec.model


def check_trainable_base(spec_text: str, adapter_hint: str) -> None:
    """A base model whose weights can be trained here: local (not an API), without an adapter."""
    spec = check_model(spec_text)
    if spec.kind == "openai":
        raise MtsaError("--model must be a local model (embedded or hf:...), not an API endpoint: "
                        "only local weights can be trained")
    if spec.adapter:
        raise MtsaError(f"--model must be a base model without an adapter{adapter_hint}")


def load_chat_tokenizer(path: str, why: str):
    """The tokenizer of a chat model; a missing one or one without a chat template is a user error."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise MtsaError(f"could not load tokenizer of '{path}': {first_line(exc)}") from None
    if not tokenizer.chat_template:
        raise MtsaError(f"model '{path}' has no chat template; {why}")
    return tokenizer


def new_output_folder(out: str) -> Path:
    """The output folder, refused if it already holds something (nothing is overwritten)."""
    path = Path(out)
    check_folder_can_be_made(path)
    if path.exists() and any(path.iterdir()):
        raise MtsaError(f"--out '{path}' is not empty; choose a new folder")
    return path


def train_and_save(trainer, out: Path):
    """Train; save the adapter (or model) and the tokenizer into `out`; return the train result.
    In a data-parallel run the first process saves."""
    result = trainer.train()
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(out))
    return result


def cpu_only() -> bool:
    """No GPU and no Apple GPU: training runs on the CPU, and transformers is told so, which is
    also what lets a data-parallel run of CPU processes (torchrun, gloo) share the work."""
    import torch

    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


PAIRS_FOLDER = "pairs_dataset"  # inside the output folder while training


def dataset_in_files(rows: list[dict], folder: Path, args):
    """`rows` as a `datasets.Dataset` stored in `folder`, written by the first process.

    TRL caches the reference log-probs beside the dataset's files. An in-memory dataset has none,
    so each process caches in a temporary folder of its own, and in a data-parallel run the other
    processes fail to find what the first one computed."""
    import datasets

    with args.main_process_first(local=False, desc="writing the pairs"):
        if args.process_index == 0:
            datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    return datasets.load_from_disk(str(folder))


def is_chat(messages: object) -> bool:
    """A non-empty list of chat messages, each a {"role": text, "content": text} mapping: what a
    chat template can render (anything else fails inside jinja or pyarrow)."""
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages)


SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
             "inverse_sqrt")  # transformers' schedules that need no settings beyond the warm-up


def check_training_settings(config: TrainingSettings) -> None:
    """The settings the SFT and preference trainers share, checked before any model loads: a bad
    one would otherwise fail inside transformers or peft, some only after the data is prepared."""
    checks = [
        (min(config.epochs, config.learning_rate) > 0 and min(config.batch_size, config.gradient_accumulation) >= 1,
         "--epochs, --learning-rate, --batch-size and --gradient-accumulation must be positive"),
        (config.lora_r >= 1 and config.lora_alpha >= 1, "--lora-r and --lora-alpha must be >= 1"),
        (0 <= config.lora_dropout < 1, "--lora-dropout must be at least 0 and below 1"),
        (config.lora_layers >= 0, "--lora-layers must be >= 0"),
        (config.max_length >= 1 and config.logging_steps >= 1, "--max-length and --logging-steps must be >= 1"),
        (config.max_steps == -1 or config.max_steps >= 1, "--max-steps must be -1 (all epochs) or >= 1"),
        (config.lr_scheduler in SCHEDULES, f"--lr-scheduler must be one of {', '.join(SCHEDULES)}"),
        # a share of the steps: transformers would read 1 or more as a number of steps
        (0 <= config.warmup_ratio < 1, f"--warmup-ratio must be at least 0 and below 1, got {config.warmup_ratio}"),
    ]
    for ok, message in checks:
        if not ok:
            raise MtsaError(message)
    check_dtype_name(config.dtype, "--dtype")


def floored_warmup(trainer_class: type) -> type:
    """`trainer_class` with its warm-up ratio rounded down to whole steps.

    Transformers rounds the ratio up, and its warm-up starts from a learning rate of 0, so the
    first step of every update learns nothing: a one-step update (a Stage 2 iteration that made
    a handful of pairs) would save the model unchanged, and a two-step one would do half its work.
    Rounded down, an update shorter than 1 / ratio steps has no warm-up; longer ones warm up as
    before."""

    class FlooredWarmupTrainer(trainer_class):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if 0 < self.args.warmup_steps < 1:  # a ratio: make it a whole number of steps
                self.args.warmup_steps = int(num_training_steps * self.args.warmup_steps)
            return super().create_scheduler(num_training_steps, optimizer)

    FlooredWarmupTrainer.__name__ = FlooredWarmupTrainer.__qualname__ = trainer_class.__name__
    return FlooredWarmupTrainer


def checkpointing_argument(config_class: type, enabled: bool) -> dict:
    """transformers 5 renamed `gradient_checkpointing` to `activation_checkpointing` (the old
    name warns); older versions only know the old one."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}


def lora_config(config, model):
    """The peft LoraConfig from a trainer config's lora_* fields; with `lora_layers`, only the
    top layers are adapted."""
    import torch
    from peft import LoraConfig

    targets = config.lora_target_modules
    layers = None
    if config.lora_layers:
        if targets == "all-linear":  # peft wants module names with layers_to_transform: the same set, named
            head = model.get_output_embeddings()
            targets = ",".join(sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                                       if isinstance(module, torch.nn.Linear) and module is not head}))
        num_layers = model.config.num_hidden_layers
        layers = list(range(max(0, num_layers - config.lora_layers), num_layers))
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        if missing := [t for t in targets if t not in names]:
            raise MtsaError(f"--lora-target-modules: the model has no module named {', '.join(missing)} "
                            "(give its linear layers' names, e.g. q_proj,v_proj, or all-linear)")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      task_type="CAUSAL_LM", layers_to_transform=layers, target_modules=targets)
