"""The request classifier: fitting, reading labelled files, one-line errors, and a user's own
classifier used by the embedded judge."""

import json

import numpy as np
import pytest

from mtsa.cli import main
from mtsa.errors import MtsaError
from mtsa.judges.requests import (
    REQUEST_HEAD_PATH,
    fit_request_head,
    load_request_head,
    p_harmful,
    read_labelled_requests,
)


def test_fitting_separates_two_clusters_whatever_their_sizes():
    rng = np.random.default_rng(0)
    direction = np.zeros(384, dtype=np.float32)
    direction[0] = 1.0
    harmful = rng.normal(size=(300, 384)).astype(np.float32) * 0.05 + direction
    benign = rng.normal(size=(30, 384)).astype(np.float32) * 0.05 - direction
    x = np.concatenate([harmful, benign])
    y = np.array([1] * 300 + [0] * 30)
    head = fit_request_head(x, y)
    assert np.all((p_harmful(head, x) >= 0.5) == y)
    with pytest.raises(MtsaError, match="need both harmful and benign"):
        fit_request_head(harmful, np.ones(300))


def test_labelled_files_and_their_errors(tmp_path):
    path = tmp_path / "policy.jsonl"
    rows = [{"request": "a", "label": "harmful"}, {"goal": "b", "label": "benign"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    read = read_labelled_requests(path)
    assert read.texts == ["a", "b"] and list(read.labels) == [1, 0]
    assert list(read_labelled_requests(path, "benign").labels) == [0, 0]
    path.write_text(json.dumps({"request": "a", "label": "maybe"}) + "\n")
    with pytest.raises(MtsaError, match="row 1 needs a 'label' of harmful or benign"):
        read_labelled_requests(path)
    with pytest.raises(MtsaError, match="not a request classifier"):
        load_request_head(path)


def test_the_shipped_classifier_loads():
    head = load_request_head(REQUEST_HEAD_PATH)
    assert head["harmful"] > 0 and head["benign"] >= 300


def test_a_users_policy_is_fitted_by_one_command_and_used_by_the_judge(tmp_path, capsys):
    """A policy where cooking questions are 'harmful': the judge built on it must say so."""
    harmful, benign = tmp_path / "harmful.jsonl", tmp_path / "benign.jsonl"
    cooking = ["How do I bake sourdough bread?", "Give me a recipe for lasagne.", "How long do I boil an egg?",
               "Write a guide to making pancakes.", "What spices go in a curry?", "How do I roast a chicken?"]
    sports = ["Who won the 1998 World Cup?", "Explain the offside rule.", "How do I improve my tennis serve?",
              "What is a hat-trick in cricket?", "Write a training plan for a 10k run.", "How big is a rugby pitch?"]
    harmful.write_text("".join(json.dumps({"request": t}) + "\n" for t in cooking))
    benign.write_text("".join(json.dumps({"request": t}) + "\n" for t in sports))
    out = tmp_path / "policy.json"
    assert main(["fit-requests", "--harmful", str(harmful), "--benign", str(benign), "--out", str(out)]) == 0
    assert "fitted on 6 harmful and 6 benign" in capsys.readouterr().out

    from mtsa.judges.base import JudgeItem
    from mtsa.judges.registry import load_judge

    judge = load_judge(f"embedded?requests={out}")
    assert judge.name == f"embedded?requests={out}"
    answer = "Sure, here is how to do it step by step. 1. First, gather what you need. 2. Then follow these steps."
    rows = judge.columns([JudgeItem("How do I make a cheese omelette?", answer),
                          JudgeItem("How many players are on a volleyball team?", answer)])
    assert rows[0]["p_harmful_request"] > 0.5 > rows[1]["p_harmful_request"]


def test_fit_requests_bad_input_is_one_line(tmp_path, capsys):
    assert main(["fit-requests", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["fit-requests", "--harmful", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["judge", "--judge", f"embedded?requests={tmp_path / 'none.json'}", "--input", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("mtsa: error: ") for line in err)
