import json

import pytest

from mtsa.errors import MtsaError
from mtsa.rollout.records import DialogueRecord, TurnRecord
from mtsa.rollout.run_folder import DIALOGUES, RunFolder


def record(goal_id):
    turn = TurnRecord(1, "t", None, "q", "r", 0.7, 3, 4, 5, 6)
    return DialogueRecord(goal_id, f"goal {goal_id}", "cat", [turn])


def test_round_trip_and_torn_last_line(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.start({"a": 1})
    folder.append(record("g1"))
    folder.append(record("g2"))
    with open(folder.path / DIALOGUES, "a") as file:
        file.write('{"goal_id": "g3", "goa')  # killed mid-write
    finished = folder.finished()
    assert [d.goal_id for d in finished] == ["g1", "g2"]
    assert finished[0] == record("g1")
    assert (folder.path / DIALOGUES).read_text().endswith("\n")
    folder.append(record("g3"))
    assert [d.goal_id for d in folder.finished()] == ["g1", "g2", "g3"]


@pytest.mark.parametrize("damage", ['{"goal_id": "g2", "goa', '{"goal_id": "g2"}', "[1, 2]"])
def test_a_damaged_line_before_the_last_is_a_one_line_error_that_says_what_to_do(tmp_path, damage):
    folder = RunFolder(tmp_path / "run")
    folder.start({"a": 1})
    folder.append(record("g1"))
    with open(folder.path / DIALOGUES, "a") as file:
        file.write(damage + "\n")
    folder.append(record("g3"))
    with pytest.raises(MtsaError, match="line 2: not a dialogue record .* remove that line") as error:
        folder.finished()
    assert "\n" not in str(error.value)


def test_refuses_to_overwrite_or_to_resume_a_different_run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.check_can_start({"target": "x"}, resume=False, same_run_keys=("target",))
    assert not folder.path.exists()  # checking creates nothing
    folder.start({"target": "x"})
    with pytest.raises(MtsaError, match="--resume"):
        folder.check_can_start({"target": "x"}, resume=False, same_run_keys=("target",))
    with pytest.raises(MtsaError, match="target differ"):
        folder.check_can_start({"target": "y"}, resume=True, same_run_keys=("target",))
    folder.check_can_start({"target": "x"}, resume=True, same_run_keys=("target",))
    written = json.loads((folder.path / "config.json").read_text())
    assert written == {"target": "x", "dtypes": written["dtypes"]}


def test_one_goal_file_named_relative_or_absolute_is_the_same_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "goals.jsonl").write_text('{"goal": "g"}\n')
    (tmp_path / "other.jsonl").write_text('{"goal": "g"}\n')
    folder = RunFolder(tmp_path / "run")
    folder.start({"goals": "goals.jsonl"})
    folder.check_can_start({"goals": str(tmp_path / "goals.jsonl")}, resume=True, same_run_keys=("goals",))
    with pytest.raises(MtsaError, match="goals differ"):
        folder.check_can_start({"goals": "other.jsonl"}, resume=True, same_run_keys=("goals",))
    with pytest.raises(MtsaError, match="goals differ"):
        folder.check_can_start({"goals": "builtin"}, resume=True, same_run_keys=("goals",))


def test_the_config_records_each_loaded_models_dtype_and_why(tmp_path, monkeypatch):
    from mtsa.models import dtype

    monkeypatch.setattr(dtype, "_CHOSEN", {})
    dtype.choose_dtype("fp32", "cpu", "the-target")
    folder = RunFolder(tmp_path / "run")
    folder.start({"target": "x"})
    written = json.loads((folder.path / "config.json").read_text())
    assert written["dtypes"] == {"the-target": {"dtype": "float32", "reason": "set explicitly"}}


def test_records_written_before_rollout_ids_load_with_the_goal_id(tmp_path):
    data = record("g1").to_json()
    del data["rollout_id"]
    assert DialogueRecord.from_json(data).rollout_id == "g1"
    assert DialogueRecord.from_json(record("g2").to_json()) == record("g2")
