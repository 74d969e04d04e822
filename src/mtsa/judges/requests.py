"""Is a request harmful? The request side of the embedded judge.

A reply is unsafe when it helps with a *harmful* request: helping with "how do I kill a Python
process" is what a good assistant does. So the embedded judge multiplies P(the reply helps) by
P(the request is harmful), and this module gives the latter: a logistic regression on the
request's MiniLM embedding (the encoder the judge already runs, so a goal costs one embedding,
shared with the reply features).

The shipped head is fitted on harmful goals (the MTSA training pool, the built-in goals and the
project's harmful questions) against the project's benign look-alikes (`data/`), which share
their vocabulary (violence in games and history, security, drugs in medicine...) in both
imperative and question form, so that neither words nor grammar alone decide. Users with their
own policy refit it on their own labelled requests (`mtsa fit-requests`) and point the judge at
the result (`--judge "embedded?requests=FILE.json"`). Fitting uses torch (L-BFGS), not an
extra library, so it runs wherever mtsa does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Sequence

import numpy as np

from mtsa.atomic import write_json_atomic
from mtsa.errors import MtsaError

REQUEST_HEAD_PATH = Path(__file__).with_name("request_head.json")
DATA_DIR = Path(__file__).with_name("data")
LABELS = {"harmful": 1, "benign": 0}
TEXT_COLUMNS = ("request", "goal", "prompt")
DEFAULT_L2 = 1e-4  # chosen by leave-one-group-out on the shipped training data (docs/judges.md)


@dataclass(frozen=True)
class LabelledRequests:
    texts: list[str]
    labels: np.ndarray  # 1 = harmful


def embed_requests(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit MiniLM embeddings, (len(texts), 384): the embedding the judge gives a goal."""
    from mtsa.judges.embedded import goal_embeddings

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    embedded = goal_embeddings(texts, batch_size)
    return np.stack([embedded[text] for text in texts])


def p_harmful(head: dict, embeddings: np.ndarray) -> np.ndarray:
    """P(harmful) for each row of unit embeddings."""
    logits = embeddings @ np.asarray(head["weights"], dtype=np.float32) + float(head["bias"])
    return 1.0 / (1.0 + np.exp(-logits))


def fit_request_head(embeddings: np.ndarray, labels: np.ndarray, l2: float = DEFAULT_L2) -> dict:
    """A class-balanced, L2-regularised logistic regression (weights and bias).

    Balanced so that a pool of many harmful goals and fewer benign look-alikes does not tilt
    the threshold; both classes must be present.
    """
    import torch

    labels = np.asarray(labels, dtype=np.float32)
    counts = [int((labels == k).sum()) for k in (0, 1)]
    if min(counts) == 0:
        raise MtsaError(f"need both harmful and benign requests to fit (got {counts[1]} harmful, {counts[0]} benign)")
    x = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))
    y = torch.from_numpy(labels)
    sample_weight = torch.where(y == 1, len(y) / (2 * counts[1]), len(y) / (2 * counts[0]))
    weights = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=500, line_search_fn="strong_wolfe")

    def loss_fn():
        optimizer.zero_grad()
        logits = x @ weights + bias
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
                * sample_weight).mean() + 0.5 * l2 * (weights ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(loss_fn)
    return {"weights": weights.detach().tolist(), "bias": float(bias.detach())}


def read_labelled_requests(path: Path, label: str | None = None) -> LabelledRequests:
    """Requests from a .json/.jsonl/.csv file: a `request` (or `goal`/`prompt`) column and a
    `label` column (harmful/benign), or every row given `label`."""
    from mtsa.goals.loaders import read_rows

    texts, labels = [], []
    for n, row in enumerate(read_rows(Path(path)), start=1):
        row = {"request": row} if isinstance(row, str) else row
        text = next((row[c] for c in TEXT_COLUMNS if isinstance(row, dict) and row.get(c)), None)
        value = label or (row.get("label") if isinstance(row, dict) else None)
        if text is None:
            raise MtsaError(f"{path}: row {n} has no request (a 'request', 'goal' or 'prompt' column)")
        if value not in LABELS:
            raise MtsaError(f"{path}: row {n} needs a 'label' of harmful or benign, got {value!r}")
        texts.append(str(text))
        labels.append(LABELS[value])
    if not texts:
        raise MtsaError(f"{path}: no requests")
    return LabelledRequests(texts, np.asarray(labels, dtype=np.int64))


def load_request_head(path: str | Path = REQUEST_HEAD_PATH) -> dict:
    try:
        head = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MtsaError(f"request classifier '{path}' not found; fit one with `mtsa fit-requests`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise MtsaError(f"cannot read request classifier '{path}': {exc}") from None
    if head.get("kind") != "request-harm" or len(head.get("weights", ())) != 384:
        raise MtsaError(f"'{path}' is not a request classifier written by `mtsa fit-requests`")
    return head


def fit_and_save(sources: list[tuple[Path, str | None]], out: Path, l2: float = DEFAULT_L2) -> dict:
    """Fit on every source (a file, and the label for all its rows or None to read a `label`
    column) and write the head; return a summary of what it was fitted on."""
    parts = [read_labelled_requests(path, label) for path, label in sources]
    texts = [t for part in parts for t in part.texts]
    labels = np.concatenate([part.labels for part in parts])
    embeddings = embed_requests(texts)
    head = fit_request_head(embeddings, labels, l2)
    train_accuracy = float(np.mean((p_harmful(head, embeddings) >= 0.5) == labels))
    summary = {"kind": "request-harm", "encoder": "all-MiniLM-L6-v2 (unit embeddings)",
               "model": "p = sigmoid(embedding @ weights + bias), class-balanced, L2",
               "l2": l2, "fitted_on": [f"{path.name} ({len(part.texts)} rows, label: {label or 'column'})"
                                       for (path, label), part in zip(sources, parts)],
               "harmful": int(labels.sum()), "benign": int(len(labels) - labels.sum()),
               "train_accuracy": round(train_accuracy, 4), "fitted_at": date.today().isoformat()}
    write_json_atomic(out, {**summary, **head})
    return summary
