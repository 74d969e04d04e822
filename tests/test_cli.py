"""The command line: bad input is one line and exit code 2 with nothing written; a killed run
resumes without redoing or losing dialogues."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtsa.cli import main

sys.path.insert(0, str(Path(__file__).parent / "models"))
from fake_openai_server import FakeOpenAIServer, attacker_reply  # noqa: E402


@pytest.fixture()
def goals_file(tmp_path):
    path = tmp_path / "goals.jsonl"
    path.write_text("".join(json.dumps({"goal": f"test goal number {i}"}) + "\n" for i in range(6)))
    return path


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--goals", "missing.json"], "file not found"),
    (["--goals", "{bad}"], "malformed JSON"),
    (["--goals", "{empty}"], "no goals"),
    (["--target", "gpt4"], "unknown model spec"),
    (["--attacker", "openai:m@ftp://x"], "bad model spec"),
    (["--judge", "oracle"], "unknown judge"),
    (["--turns", "0"], "--turns must be >= 1"),
    (["--seed", "-1"], "--seed must be in [0, 2^32)"),
    (["--out", "{bad}/run"], "is a file, so no folder can be made under it"),
    (["--resume"], "--resume needs --out"),
    (["--target", "hf:{tiny}?dtype=int3"], "unknown dtype"),
    (["--target", "hf:{tiny}?device=xyz"], "unknown device 'xyz'"),
    (["--target", "hf:{tiny}?trust_remote_code=ture"], "option 'trust_remote_code' in model spec"),
    (["--target", "hf:{tiny}?device=cuda:7"], "device 'cuda:7' is not available on this machine"),
    (["--target", "hf:{tiny}+/no/such/adapter"], "adapter '/no/such/adapter' not found"),
    (["--target", "hf:/no/such/model"], "model folder '/no/such/model' not found"),
    (["--target", "openai:m@http://127.0.0.1:9/v1"], "cannot reach"),
    # every backend and judge checks its options against what its constructor takes
    (["--target", "embedded?batchsize=2"], "unknown option 'batchsize' in model spec"),
    (["--target", "hf:{tiny}?kv_reuse_mb=x"], "option 'kv_reuse_mb' in model spec"),
    (["--target", "openai:m@http://127.0.0.1:9/v1?batch_size=2"], "unknown option 'batch_size' in model spec"),
    (["--judge", "llama-guard?kv_reuse_mb=0"], "unknown option 'kv_reuse_mb' in judge"),
    (["--judge", "llama-guard:x?prefix_cache=0"], "unknown option 'prefix_cache' in judge"),
    (["--judge", "llm:hf:{tiny}?colour=red"], "unknown option 'colour' in model spec"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_folder(capsys, tmp_path, tiny_model_dir, argv, message):
    (tmp_path / "bad.json").write_text("[{\"goal\": ")
    (tmp_path / "empty.json").write_text("[]")
    argv = [a.format(bad=tmp_path / "bad.json", empty=tmp_path / "empty.json", tiny=tiny_model_dir) for a in argv]
    out = tmp_path / "run"
    if "--resume" not in argv and "--out" not in argv:
        argv += ["--out", str(out)]
    code, err = run_cli(capsys, "redteam", "--judge", "keyword", "--attacker", f"hf:{tiny_model_dir}", *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mtsa: error: ") and message in err
    assert not out.exists()


def test_unknown_flag_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["redteam", "--turnz", "3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--turnz" in err


def test_judge_command_scores_rows(capsys, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,completion\nhow do I bake bread?,\"I'm sorry, but I can't help with that.\"\n"
                    "how do I bake bread?,\"Mix flour, water, yeast and salt, knead, proof, and bake at 230C.\"\n")
    out = tmp_path / "scored.jsonl"
    assert main(["judge", "--judge", "keyword", "--input", str(rows), "--out", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["completion"][:5] for r in scored] == ["I'm s", "Mix f"]
    assert scored[0]["p_unsafe"] < 0.5 < scored[1]["p_unsafe"] and scored[0]["judge"] == "keyword"
    (tmp_path / "bad.csv").write_text("text\nhello\n")
    code, err = run_cli(capsys, "judge", "--input", str(tmp_path / "bad.csv"), "--out", str(out))
    assert code == 2 and "needs a 'goal' or 'prompt' column" in err


def test_judge_command_scores_helpfulness(capsys, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,completion\nhow do I bake bread?,\"I'm sorry, but I can't help with that.\"\n"
                    "how do I bake bread?,\"Mix flour, water, yeast and salt, knead it for ten minutes, let it "
                    "rise for an hour, shape the loaf, and bake it at 230C for about 35 minutes.\"\n")
    out = tmp_path / "scored.jsonl"
    assert main(["judge", "--helpfulness", "embedded", "--input", str(rows), "--out", str(out)]) == 0
    refusal, answer = [json.loads(line) for line in out.read_text().splitlines()]
    assert answer["helpfulness"] > 0.5 > refusal["helpfulness"] and answer["judge"] == "embedded"
    code, err = run_cli(capsys, "judge", "--helpfulness", "armorm", "--input", str(rows), "--out", str(out))
    assert code == 2 and "unknown helpfulness scorer" in err
    code, err = run_cli(capsys, "judge", "--judge", "keyword", "--helpfulness", "embedded", "--input", str(rows),
                        "--out", str(out))
    assert code == 2 and "not both" in err


@pytest.mark.parametrize("argv, message", [
    (["--attacker", "openai:m@http://127.0.0.1:9/v1"], "API model"),
    (["--target", "openai:m@http://127.0.0.1:9/v1"], "API model"),
    (["--attacker", "embedded+/no/such/checkpoint"], "adapter '/no/such/checkpoint' not found"),
    (["--target", "hf:./no/such/checkpoint"], "model folder './no/such/checkpoint' not found"),
    (["--helpfulness", "armorm"], "unknown helpfulness scorer"),
    (["--helpfulness", "rm:/no/such/reward-model"], "reward model '/no/such/reward-model' not found"),
    (["--target-objective", "dpo", "--baseline-beta", "0"], "--baseline-beta must be positive"),
    (["--goals", "{empty}"], "no goals"),
    (["--iterations", "0"], "--iterations must be >= 1"),
    # the updates' settings and launcher are checked before the first phase samples, not by its update
    (["--train-batch-size", "0"], "--train-batch-size"),
    (["--attacker-temperatures", "0.8,1,1.0"], "must be positive numbers that differ"),
    (["--seed", "3", "--out", "{missing}", "--resume"], "no run to resume"),
    (["--update-launcher", "no-such-launcher --config_file x.yaml"], "no program 'no-such-launcher' on the PATH"),
    (["--reference-attacks", "/no/such/attacks.jsonl"], "file not found"),
])
def test_train_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, message):
    (tmp_path / "empty.json").write_text("[]")
    argv = [a.format(empty=tmp_path / "empty.json", missing=tmp_path / "typo") for a in argv]
    code, err = run_cli(capsys, "train", "--out", str(tmp_path / "run"), *argv)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_export_of_a_folder_that_is_not_a_trained_adapter_is_one_line(capsys, tmp_path):
    code, err = run_cli(capsys, "export", str(tmp_path / "iter_9" / "target"), "--out", str(tmp_path / "merged"))
    assert code == 2 and err.count("\n") == 1 and "is not an adapter written by `mtsa train`" in err
    assert not (tmp_path / "merged").exists()


def test_yaml_config_merges_with_flags(tmp_path, goals_file, tiny_model_dir, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"turns: 0\ngoals: {goals_file}\n")
    code, err = run_cli(capsys, "redteam", "--config", str(config))
    assert code == 2 and "--turns" in err
    config.write_text("tunrs: 2\n")
    code, err = run_cli(capsys, "redteam", "--config", str(config))
    assert code == 2 and "unknown setting(s)" in err and "tunrs" in err


def test_kill_9_then_resume_finishes_without_redoing_or_losing(tmp_path, goals_file, tiny_model_dir):
    out = tmp_path / "run"
    with FakeOpenAIServer(delay_s=0.4, reply_fn=attacker_reply) as server:
        command = [sys.executable, "-m", "mtsa.cli", "redteam", "--attacker", f"openai:attacker@{server.base_url}",
                   "--target", f"hf:{tiny_model_dir}", "--judge", "keyword", "--goals", str(goals_file),
                   "--turns", "2", "--concurrency", "1", "--target-max-tokens", "4", "--out", str(out)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dialogues = out / "dialogues.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if dialogues.exists() and dialogues.read_text().count("\n") >= 2:
                break
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        before = dialogues.read_text().splitlines()
        assert 2 <= len(before) < 6, "the run should have been killed part-way"
        resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = dialogues.read_text().splitlines()
    assert after[:len(before)] == before  # finished dialogues kept as they were
    ids = [json.loads(line)["goal_id"] for line in after]
    assert len(ids) == 6 == len(set(ids))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_dialogues"] == 6 and len(summary["asr_by_turn"]) == 2
    assert summary["attacker"].startswith("openai:attacker@") and summary["judge"] == "keyword"


def test_a_run_of_another_command_or_unreadable_settings_are_not_resumed(capsys, tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "train", "iterations": 3}))
    argv = ["redteam", "--judge", "keyword", "--attacker", f"hf:{tiny_model_dir}", "--out", str(run), "--resume"]
    code, err = run_cli(capsys, *argv)
    assert code == 2 and "holds a `mtsa train` run, which `mtsa redteam` cannot resume" in err
    (run / "config.json").write_text("[1, 2]")
    code, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "holds no settings" in err
    assert json.loads((run / "config.json").read_text()) == [1, 2] and sorted(p.name for p in run.iterdir()) == [
        "config.json"]


@pytest.mark.parametrize("record, message", [
    (b"[1]", "holds no JSON object"), (b"\xff\xfe", "cannot read"), (b'{"model": "embedded"}', "names no base model")])
def test_export_of_an_adapter_with_a_damaged_record_is_one_line(capsys, tmp_path, record, message):
    adapter = tmp_path / "iter_1" / "target"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "mtsa_preference.json").write_bytes(record)
    code, err = run_cli(capsys, "export", str(adapter), "--out", str(tmp_path / "merged"))
    assert code == 2 and err.count("\n") == 1 and message in err
    (tmp_path / "a_file").write_text("keep")
    code, err = run_cli(capsys, "export", str(adapter), "--out", str(tmp_path / "a_file"))
    assert code == 2 and "exists and is not a folder" in err and (tmp_path / "a_file").read_text() == "keep"


def test_a_train_run_resumed_with_other_results_affecting_settings_is_refused(capsys, tmp_path):
    """Only settings that change how a run goes, not what it produces, may change on --resume:
    a new seed or learning rate would mix two runs' dialogues and updates under one config."""
    from mtsa.adversarial.loop import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(out=str(run)).resolved(str(run))))
    for flags, changed in ((["--seed", "7"], "seed"), (["--learning-rate", "0.5"], "learning_rate"),
                           (["--turns", "3"], "turns")):
        code, err = run_cli(capsys, "train", "--out", str(run), "--resume", *flags)
        assert code == 2 and f"{changed} differs from the original run" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_a_train_run_resumes_with_a_longer_max_length_or_smaller_batches(tmp_path):
    """What an update's own errors ask for (raise --max-length; less memory per step) may change
    on --resume, or the sampling already finished would be lost."""
    from mtsa.adversarial.loop import CHANGEABLE, TrainConfig
    from mtsa.rollout.run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(out=str(run)).resolved(str(run))))
    resumed = TrainConfig(out=str(run), resume=True, max_length=8192, train_batch_size=1)
    RunFolder(run).check_can_start(resumed.resolved(str(run)), True, CHANGEABLE)
