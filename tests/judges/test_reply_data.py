"""The project's own labelled replies (scripts/data/labelled_replies.jsonl) and compliance openings
(scripts/data/harmful_compliance_openings.jsonl), optional inputs of the reply heads' fitting
script: well-formed, and written without XSTest's prompts. Nothing here prints a row."""

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
OPENINGS = [json.loads(line) for line in
            (ROOT / "scripts" / "data" / "harmful_compliance_openings.jsonl").read_text().splitlines()]
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
    assert not [row for row in ROWS + OPENINGS if row["request"].strip().lower() in prompts]


def test_compliance_openings_are_openings_of_willing_answers_to_harmful_requests() -> None:
    """Only the opening (the reader reads a reply's first 400 characters), and willing: the
    refusal phrases find next to nothing ("I'm not going to judge you" trips one)."""
    assert len(OPENINGS) >= 200
    assert all(set(row) == {"request", "reply", "label", "style", "harmful", "category"} for row in OPENINGS)
    assert all(row["label"] == "full_compliance" and row["harmful"] is True for row in OPENINGS)
    assert max(len(row["reply"]) for row in OPENINGS) <= 400
    scores = KeywordJudge().score([JudgeItem(row["request"], row["reply"]) for row in OPENINGS])
    assert sum(score == 1.0 for score in scores) / len(scores) >= 0.99
