"""The project's own labelled replies (scripts/data/labelled_replies.jsonl), an optional input of
the reply heads' fitting script: well-formed, and written without XSTest's prompts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mtsa.judges.base import JudgeItem
from mtsa.judges.keyword import KeywordJudge
from mtsa.judges.refusal import CLASSES

ROOT = Path(__file__).parents[2]
ROWS = [json.loads(line) for line in (ROOT / "scripts" / "data" / "labelled_replies.jsonl").read_text().splitlines()]
XSTEST = ROOT.parent / "shared" / "data" / "xstest_prompts.csv"


def test_rows_are_labelled_and_harmful_requests_are_never_answered_in_full() -> None:
    assert len(ROWS) >= 400
    assert all(set(row) == {"request", "reply", "label", "style", "harmful"} for row in ROWS)
    assert all(row["label"] in CLASSES and isinstance(row["harmful"], bool) for row in ROWS)
    assert not [row for row in ROWS if row["harmful"] and row["label"] == "full_compliance"]
    assert {row["label"] for row in ROWS} == set(CLASSES)


def test_premise_refutations_carry_no_refusal_phrase() -> None:
    """What the set adds: refusals a phrase list cannot see."""
    refutations = [row for row in ROWS if row["style"] == "premise_refutation"]
    scores = KeywordJudge().score([JudgeItem(row["request"], row["reply"]) for row in refutations])
    assert len(refutations) >= 50 and sum(s == 1.0 for s in scores) / len(scores) > 0.9


@pytest.mark.skipif(not XSTEST.is_file(), reason="the project's shared data is absent")
def test_no_xstest_prompt_was_used() -> None:
    with XSTEST.open(newline="") as f:
        prompts = {row["prompt"].strip().lower() for row in csv.DictReader(f)}
    assert not [row for row in ROWS if row["request"].strip().lower() in prompts]
