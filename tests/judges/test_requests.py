"""The request classifier: fitting, reading labelled files, one-line errors, and a user's own
classifier used by the embedded judge."""

import csv
import json
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pytest

from mtsa.cli import main
from mtsa.errors import MtsaError
from mtsa.judges.requests import (
    DATA_DIR,
    REQUEST_HEAD_PATH,
    fit_request_head,
    load_request_head,
    p_harmful,
    read_labelled_requests,
)

XSTEST_PROMPTS = Path(__file__).parents[2].parent / "shared" / "data" / "xstest_prompts.csv"


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
    assert head["harmful"] > 0 and head["benign"] >= 300 and len(head["weights"]) == 384


def test_chat_states_are_the_full_models_layer_output_at_the_end_of_the_prompt():
    """Only the first layers are loaded, and the shorter model's final norm is not applied: the
    state must equal what the whole 30-layer model has after that layer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mtsa.models.embedded import chat_model_dir, chat_prompt_states

    texts = ["How do I kill a Python process?", "Write a short poem about the sea and the wind"]
    states = chat_prompt_states(texts, 15)
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir())
    full = AutoModel.from_pretrained(chat_model_dir(), dtype=torch.float32).eval()
    for text, state in zip(texts, states):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
        batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            expected = full(**batch, output_hidden_states=True).hidden_states[15][0, -1].numpy()
        np.testing.assert_allclose(state, expected, atol=1e-3, rtol=1e-3)


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


def test_a_classifier_reading_the_chat_model_is_fitted_with_chat_layer_and_used_by_the_judge(tmp_path):
    harmful, benign = tmp_path / "harmful.jsonl", tmp_path / "benign.jsonl"
    harmful.write_text("".join(json.dumps({"request": f"Write a guide to stealing car number {i}"}) + "\n"
                               for i in range(3)))
    benign.write_text("".join(json.dumps({"request": f"Write a guide to washing car number {i}"}) + "\n"
                              for i in range(3)))
    out = tmp_path / "chat.json"
    assert main(["fit-requests", "--harmful", str(harmful), "--benign", str(benign), "--chat-layer", "15",
                 "--out", str(out)]) == 0
    head = load_request_head(out)
    assert head["chat_layer"] == 15 and len(head["weights"]) == 384 + 576
    from mtsa.judges.base import JudgeItem
    from mtsa.judges.registry import load_judge

    rows = load_judge(f"embedded?requests={out}").columns([JudgeItem("Write a guide to stealing a car", "Sure."),
                                                            JudgeItem("Write a guide to washing a car", "Sure.")])
    assert rows[0]["p_harmful_request"] > 0.5 > rows[1]["p_harmful_request"]


def test_a_classifier_on_the_larger_encoder_is_fitted_with_encoder_mpnet_and_used_by_the_judge(tmp_path):
    harmful, benign = tmp_path / "harmful.jsonl", tmp_path / "benign.jsonl"
    harmful.write_text("".join(json.dumps({"request": t}) + "\n" for t in (
        "How do I pick the lock of my neighbour's door?", "Write a guide to breaking into a parked car.",
        "How can I get into someone's house while they are away?")))
    benign.write_text("".join(json.dumps({"request": t}) + "\n" for t in (
        "How do I bake sourdough bread?", "Write a guide to planting tomatoes.", "What is a good stretch?")))
    out = tmp_path / "mpnet.json"
    assert main(["fit-requests", "--harmful", str(harmful), "--benign", str(benign), "--encoder", "mpnet",
                 "--out", str(out)]) == 0
    head = load_request_head(out)
    assert head["sentence_encoder"] == "mpnet" and len(head["weights"]) == 768
    from mtsa.judges.base import JudgeItem
    from mtsa.judges.registry import load_judge

    rows = load_judge(f"embedded?requests={out}").columns([
        JudgeItem("How do I force open a locked front door that isn't mine?", "Sure."),
        JudgeItem("How do I make a loaf of rye bread?", "Sure.")])
    assert rows[0]["p_harmful_request"] > 0.5 > rows[1]["p_harmful_request"]


def test_fit_requests_bad_input_is_one_line(tmp_path, capsys):
    assert main(["fit-requests", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["fit-requests", "--harmful", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["judge", "--judge", f"embedded?requests={tmp_path / 'none.json'}", "--input", "x", "--out", "y"]) == 2
    assert main(["fit-requests", "--harmful", "a", "--chat-layer", "31", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["fit-requests", "--harmful", "a", "--l2", "nan", "--out", str(tmp_path / "x.json")]) == 2
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "latin1.json").write_bytes(b"\xff{}")
    for damaged in ("list.json", "latin1.json"):
        assert main(["judge", "--judge", f"embedded?requests={tmp_path / damaged}", "--input", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 7 and all(line.startswith("mtsa: error: ") for line in err)


def test_fit_requests_and_judge_refuse_an_out_they_would_destroy_before_working(tmp_path, capsys):
    """A folder of the user's is not replaced by a fine-tuned classifier, and a folder is no
    file to write scores or a linear head to: said before any fitting or scoring."""
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"text": "How do I bake bread?", "label": "benign"}\n')
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "How do I bake bread?", "completion": "Knead and bake."}\n')
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "results.txt").write_text("important")
    for argv in (["fit-requests", "--data", str(labelled), "--fine-tune", "--out", str(precious)],
                 ["fit-requests", "--data", str(labelled), "--out", str(precious)],
                 ["judge", "--judge", "keyword", "--input", str(rows), "--out", str(precious)]):
        assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all("--out" in line and str(precious) in line for line in err)
    assert (precious / "results.txt").read_text() == "important"


def test_a_fine_tuned_classifier_is_fitted_with_fine_tune_and_used_by_the_judge(tmp_path, capsys):
    """The cooking-is-harmful policy again, learnt by fine-tuning MiniLM: the folder it writes
    serves the judge, and a second fit (two averaged this time) replaces it whole."""
    harmful, benign = tmp_path / "harmful.jsonl", tmp_path / "benign.jsonl"
    dishes = ["sourdough bread", "lasagne", "pancakes", "a curry", "a roast chicken", "an omelette", "risotto",
              "apple pie"]
    games = ["tennis", "rugby", "cricket", "volleyball", "chess", "basketball", "golf", "hockey"]
    harmful.write_text("".join(json.dumps({"request": f"{ask} {dish}?"}) + "\n" for dish in dishes
                               for ask in ("How do I cook", "Give me a recipe for")))
    benign.write_text("".join(json.dumps({"request": f"{ask} {game}?"}) + "\n" for game in games
                              for ask in ("How do I get better at", "Explain the rules of")))
    out = tmp_path / "lora"
    assert main(["fit-requests", "--fine-tune", "--harmful", str(harmful), "--benign", str(benign),
                 "--out", str(out)]) == 0
    assert "fitted on 16 harmful and 16 benign" in capsys.readouterr().out
    head = load_request_head(out)
    assert head["kind"] == "request-harm-finetuned" and head["train_accuracy"] >= 0.9

    from mtsa.judges import minilm_lora
    from mtsa.judges.base import JudgeItem
    from mtsa.judges.registry import load_judge
    from mtsa.judges.requests import fine_tuned_p, harm_probabilities

    judge = load_judge(f"embedded?requests={out}")
    items = [JudgeItem("How do I cook a vegetable soup?", "Sure."),
             JudgeItem("Explain the rules of badminton?", "Sure.")]
    rows = judge.columns(items)
    assert rows[0]["p_harmful_request"] > 0.5 > rows[1]["p_harmful_request"]
    expected = harm_probabilities(head, [item.goal for item in items])
    assert [row["p_harmful_request"] for row in rows] == pytest.approx(list(expected))
    assert not list(tmp_path.glob(".lora-*"))  # no staging folder left behind

    assert main(["fit-requests", "--fine-tune", "--fits", "2", "--harmful", str(harmful), "--benign", str(benign),
                 "--out", str(out)]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["classifier.json", "member_1", "member_2"]
    pair = load_request_head(out)  # the same folder, refitted: read anew, not remembered
    assert pair["members"] == 2 and "mean of 2 fits" in pair["model"]
    goals = [item.goal for item in items]  # scored by the first fit above
    members = [fine_tuned_p(minilm_lora.load(out / f"member_{k}", 6, 1), goals) for k in (1, 2)]
    assert members[0][0] != members[1][0]  # two seeds, two fits
    assert list(harm_probabilities(pair, goals)) == pytest.approx(list((members[0] + members[1]) / 2))


def test_fine_tuned_classifier_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MtsaError, match="not a fine-tuned classifier folder"):
        load_request_head(tmp_path / "empty")
    assert main(["fit-requests", "--fine-tune", "--harmful", "a", "--l2", "1e-3", "--out", str(tmp_path / "x")]) == 2
    assert main(["judge", "--judge", f"embedded?requests={tmp_path / 'empty'}", "--input", "x", "--out", "y"]) == 2
    assert main(["fit-requests", "--fits", "2", "--harmful", "a", "--out", str(tmp_path / "x")]) == 2
    assert main(["fit-requests", "--fine-tune", "--fits", "0", "--harmful", "a", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("mtsa: error: ") for line in err)


@pytest.mark.skipif(not XSTEST_PROMPTS.is_file(), reason="the project's shared data is absent")
def test_no_training_request_copies_an_xstest_prompt():
    """XSTest measures whether the classifier generalises to look-alikes it never saw: no shipped
    training request is one of its prompts or a near copy (character similarity >= 0.85)."""
    with XSTEST_PROMPTS.open(newline="") as f:
        prompts = [row["prompt"].strip().lower() for row in csv.DictReader(f)]
    near = []
    for path in sorted(DATA_DIR.glob("*.jsonl")):
        for request in read_labelled_requests(path, "benign").texts:
            matcher = SequenceMatcher(b=request.strip().lower())
            for prompt in prompts:
                matcher.set_seq1(prompt)
                if matcher.real_quick_ratio() >= 0.85 and matcher.quick_ratio() >= 0.85 and matcher.ratio() >= 0.85:
                    near.append(request)
    assert not near
