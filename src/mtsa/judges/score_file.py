"""`mtsa judge`: score existing (goal or prompt, response) rows from a CSV or JSONL file.

Users audit old transcripts with it, and it is how a judge's accuracy against human labels
is measured. Output: the input rows plus the judge's columns (`p_unsafe`; for the embedded
judge also `p_harmful_request`, `p_helped`, `p_on_goal` and `reread`; for the refusal judge
`p_full_compliance`, `p_partial_refusal`, `p_full_refusal` and `p_refusal`), as JSONL, written to a temporary file
and renamed into place so that a crash never leaves a half-written result. With
`--helpfulness SCORER` it writes a helpfulness scorer's `helpfulness` column instead (Stage 2's
reward term), with the embedded scorer's parts beside it.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from mtsa.atomic import write_jsonl_atomic
from mtsa.errors import MtsaError
from mtsa.goals.loaders import read_rows
from mtsa.judges.base import JudgeItem
from mtsa.judges.registry import check_judge, load_judge

GOAL_COLUMNS = ("goal", "prompt")
RESPONSE_COLUMNS = ("response", "completion")


def score_file(judge_name: str, input_path: str, out_path: str, batch_size: int = 256,
               helpfulness: bool = False) -> int:
    """Score every row; return how many were written. With `helpfulness`, `judge_name` names a
    helpfulness scorer (`rewards/registry.py`) and its score is the `helpfulness` column."""
    if helpfulness:
        from mtsa.rewards.registry import check_helpfulness, load_helpfulness

        check, load, column = check_helpfulness, load_helpfulness, "helpfulness"
    else:
        check, load, column = check_judge, load_judge, "p_unsafe"
    check(judge_name)
    rows = read_rows(Path(input_path))
    items = [_item(row, n, input_path) for n, row in enumerate(rows, start=1)]
    if not items:
        raise MtsaError(f"{input_path}: no rows to score")
    out = Path(out_path)
    if not out.parent.is_dir():
        raise MtsaError(f"output folder '{out.parent}' does not exist")
    if out.is_dir():
        raise MtsaError(f"--out {out} is a folder: give the scored file's path")
    judge = load(judge_name)
    # Judges with more to say than one probability (the embedded judge's three factors, the
    # refusal judge's three classes) give named columns; others give their score as p_unsafe
    # (helpfulness scorers: as helpfulness).
    columns = getattr(judge, "columns", None) or (lambda batch: [{column: s} for s in judge.score(batch)])
    scored: list[dict[str, float]] = []
    for start in tqdm(range(0, len(items), batch_size), desc="judging", unit="batch"):
        scored += columns(items[start:start + batch_size])
    write_jsonl_atomic(out, ({**row, **{k: round(float(v), 6) for k, v in values.items()}, "judge": judge.name}
                             for row, values in zip(rows, scored)))
    return len(rows)


def _item(row, n: int, origin: str) -> JudgeItem:
    if not isinstance(row, dict):
        raise MtsaError(f"{origin}: row {n} is not an object with goal/prompt and response/completion")
    goal = next((row[c] for c in GOAL_COLUMNS if row.get(c)), None)
    reply = next((row[c] for c in RESPONSE_COLUMNS if c in row and row[c] is not None), None)
    if goal is None or reply is None:
        raise MtsaError(f"{origin}: row {n} needs a 'goal' or 'prompt' column and a 'response' or "
                        "'completion' column")
    return JudgeItem(goal=str(goal), reply=str(reply), history=[{"role": "user", "content": str(goal)}])
