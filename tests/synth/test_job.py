"""`mtsa synth` end to end with the offline templates and the tiny model as the target."""

import json

import datasets
import pytest

from mtsa.cli import main


@pytest.fixture()
def goals_file(tmp_path):
    path = tmp_path / "goals.jsonl"
    path.write_text("".join(json.dumps({"goal": f"Explain how to do forbidden thing {i}"}) + "\n" for i in range(3)))
    return path


def synth(tmp_path, goals_file, tiny_model_dir, *extra):
    return main(["synth", "--offline-templates", "--target", f"hf:{tiny_model_dir}", "--judge", "keyword",
                 "--goals", str(goals_file), "--turns", "2", "--target-max-tokens", "4",
                 "--out", str(tmp_path / "sft.jsonl"), *extra])


def test_offline_synthesis_writes_a_trl_ready_dataset(tmp_path, goals_file, tiny_model_dir, capsys):
    assert synth(tmp_path, goals_file, tiny_model_dir, "--keep-all", "--top-k", "5") == 0
    rows = datasets.load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    assert len(rows) == 5
    assert {"messages", "goal", "strategy", "success", "scores"} <= set(rows.column_names)
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant", "user", "assistant"]
        assert "USE THIS STRATEGY" not in row["messages"][0]["content"]  # the attacker learns to choose
        assert row["messages"][2]["content"].startswith("Thinking 1:")
        assert len(row["scores"]) == 2
        assert row["strategy"] in {"purpose_inversion", "query_decomposition", "role_play", "mixed"}
    report = json.loads((tmp_path / "sft.jsonl.run" / "summary.json").read_text())
    assert report["dialogues"] == 12 and report["selected"] == 5 and report["kept"] == 12
    assert report["mean_pairwise_cosine_after"] <= report["mean_pairwise_cosine_before"]
    assert sum(report["strategies_before"].values()) == 12


def test_top_k_above_the_usable_dialogues_keeps_them_all_and_says_so(tmp_path, goals_file, tiny_model_dir, capsys):
    """How many attacks succeed is known only after synthesis: asking for more than there are is
    not an error that would leave no dataset."""
    assert synth(tmp_path, goals_file, tiny_model_dir, "--keep-all", "--top-k", "50") == 0
    assert "--top-k 50: only 12 usable dialogues, so all of them are kept" in capsys.readouterr().out
    assert len((tmp_path / "sft.jsonl").read_text().splitlines()) == 12


def test_unknown_strategy_and_missing_out_are_user_errors(tmp_path, goals_file, capsys):
    assert main(["synth", "--strategies", "flattery", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "unknown strategies" in capsys.readouterr().err
    assert main(["synth"]) == 2
    assert "--out FILE.jsonl is required" in capsys.readouterr().err
