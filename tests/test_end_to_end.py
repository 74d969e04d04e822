"""The whole red-team on the embedded default models: a couple of goals, 2 turns."""

import json

from mtsa.cli import main


def test_embedded_default_red_team(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["redteam", "--limit", "2", "--turns", "2", "--attacker-max-tokens", "64",
                 "--target-max-tokens", "48", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ASR (P(unsafe) >= 0.5)" in printed and "by turn 2" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["attacker"] == config["target"] == config["judge"] == "embedded"
    dialogues = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
    assert len(dialogues) == 2
    for dialogue in dialogues:
        assert dialogue["format_failure"] or len(dialogue["turns"]) == 2
        for turn in dialogue["turns"]:
            assert turn["question"] and 0.0 <= turn["p_unsafe"] <= 1.0 and turn["target_tokens"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_goals"] == 2 and summary["n_dialogues"] + summary["format_failures"] == 2
    assert summary["judge"] == "embedded" and summary["attacker"] == "embedded" and summary["target"] == "embedded"
    assert len(summary["asr_by_turn"]) == 2 and 0.0 <= summary["asr"] <= 1.0


def test_demo_pipeline_synth_sft_redteam_train_eval(tmp_path, capsys):
    """The whole pipeline on the embedded default, shrunk: Stage 2 runs one real iteration."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--goals", "1", "--turns", "1", "--sft-steps", "1"]) == 0
    assert (out / "attacks.jsonl").is_file() and (out / "attacker" / "adapter_config.json").is_file()
    summary = json.loads((out / "redteam" / "summary.json").read_text())
    assert summary["attacker"] == f"embedded+{out / 'attacker'}" and summary["n_goals"] == 1
    metrics = json.loads((out / "train" / "iter_1" / "metrics.json").read_text())
    # Stage 2 is judged by keyword, so that the 135M target's replies leave the updates pairs
    assert json.loads((out / "train" / "config.json").read_text())["judge"] == "keyword"
    assert {"attacker_sampling_asr", "attacker_update", "target_update", "rewrite_sources"} <= set(metrics)
    for name in ("attacker_pairs.jsonl", "target_pairs.jsonl", "rewrites.jsonl"):
        assert (out / "train" / "iter_1" / name).is_file()
    evaluation = json.loads((out / "eval" / "summary.json").read_text())
    assert evaluation["target"] == metrics["target_out"] and evaluation["attacker"] == summary["attacker"]
    assert "before Stage 2" in capsys.readouterr().out
    train = (out / "train_goals.jsonl").read_text()
    attack = (out / "attack_goals.jsonl").read_text()
    assert train and attack and train != attack
    # a resumed demo skips the finished stages; one with other settings, or a new one here, is refused
    assert main(["demo", "--out", str(out), "--resume", "--goals", "1", "--turns", "1", "--sft-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--resume", "--goals", "2", "--turns", "1", "--sft-steps", "1"]) == 2
    assert "--goals differs from its first run" in capsys.readouterr().err
    assert main(["demo", "--out", str(out)]) == 2 and "is not empty" in capsys.readouterr().err
    assert (out / "train_goals.jsonl").read_text() == train  # untouched
