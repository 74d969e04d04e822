"""Settings merge in one order: defaults, a resumed run's saved settings, the YAML file, the flags."""

import json

import pytest

from mtsa.adversarial.loop import TrainConfig
from mtsa.cli import build_parser
from mtsa.config import build
from mtsa.errors import MtsaError
from mtsa.redteam import RedteamConfig
from mtsa.synth.job import SynthConfig


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_a_bare_resume_continues_with_the_settings_the_run_started_with(tmp_path):
    started = TrainConfig(attacker="embedded+x", target_beta=0.05, learning_rate=3e-4, limit=4, iterations=2,
                          out=str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**started.resolved(str(tmp_path)), "dtypes": {}}))
    resumed = build(TrainConfig, parse("train", "--out", str(tmp_path), "--resume"))
    for name in ("attacker", "target_beta", "learning_rate", "limit", "iterations"):
        assert getattr(resumed, name) == getattr(started, name)
    assert resumed.resume and resumed.out == str(tmp_path)


def test_flags_and_yaml_given_again_win_over_the_saved_settings(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"concurrency": 4, "turns": 3, "seed": 7}))
    (tmp_path / "settings.yaml").write_text("turns: 2\n")
    config = build(RedteamConfig, parse("redteam", "--out", str(tmp_path), "--resume", "--concurrency", "8"),
                   str(tmp_path / "settings.yaml"))
    assert (config.concurrency, config.turns, config.seed) == (8, 2, 7)


def test_a_new_run_and_a_run_without_saved_settings_start_from_the_defaults(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"turns": 3}))
    assert build(RedteamConfig, parse("redteam", "--out", str(tmp_path))).turns == 5  # not resuming
    assert build(RedteamConfig, parse("redteam", "--out", str(tmp_path / "new"), "--resume")).turns == 5


def test_synthesis_keeps_its_settings_beside_the_dataset(tmp_path):
    out = tmp_path / "data.jsonl"
    (tmp_path / "data.jsonl.run").mkdir()
    (tmp_path / "data.jsonl.run" / "config.json").write_text(json.dumps({"strategies": "role_play", "top_k": 3}))
    config = build(SynthConfig, parse("synth", "--out", str(out), "--resume"))
    assert (config.strategies, config.top_k) == ("role_play", 3)


def test_unreadable_saved_settings_are_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(MtsaError, match="cannot read the run's settings"):
        build(RedteamConfig, parse("redteam", "--out", str(tmp_path), "--resume"))


@pytest.mark.parametrize("line, message", [
    ("turns: 2.7", "'turns' must be a whole number, not 2.7"),  # would never reach its last turn
    ("turns: '5'", "'turns' must be a whole number"),
    ("stop_on_unsafe: 'no'", "'stop_on_unsafe' must be true or false"),  # a true string
    ("threshold: .nan", "'threshold' must be a finite number"),
    ("target: null", "'target' must be text"),
    ("target_system_prompt: [a, b]", "'target_system_prompt' must be text"),
])
def test_settings_of_the_wrong_type_in_a_file_are_one_line_errors(tmp_path, line, message):
    (tmp_path / "settings.yaml").write_text(line + "\n")
    with pytest.raises(MtsaError, match=message):
        build(RedteamConfig, parse("redteam"), str(tmp_path / "settings.yaml"))


def test_settings_in_a_file_are_converted_where_no_meaning_is_lost(tmp_path):
    (tmp_path / "settings.yaml").write_text("threshold: 1\nout: 2026\nlimit: null\n")
    config = build(RedteamConfig, parse("redteam"), str(tmp_path / "settings.yaml"))
    assert (config.threshold, config.out, config.limit) == (1.0, "2026", None)


def test_a_nan_flag_and_a_config_file_that_is_not_utf8_are_one_line_errors(tmp_path):
    with pytest.raises(MtsaError, match="'learning_rate' must be a finite number"):
        build(TrainConfig, parse("train", "--learning-rate", "nan"))
    (tmp_path / "settings.yaml").write_bytes(b"turns: \xff\n")
    with pytest.raises(MtsaError, match="cannot read config file"):
        build(RedteamConfig, parse("redteam"), str(tmp_path / "settings.yaml"))
