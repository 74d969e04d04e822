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
    with pytest.raises(MtsaError, match="no run to resume"):  # a typo in --out starts nothing
        folder.check_can_start({"target": "x"}, resume=True, changeable=())
    folder.check_can_start({"target": "x"}, resume=False, changeable=())
    assert not folder.path.exists()  # checking creates nothing
    folder.start({"target": "x", "seed": 0, "concurrency": 16})
    with pytest.raises(MtsaError, match="--resume"):
        folder.check_can_start({"target": "x"}, resume=False, changeable=())
    with pytest.raises(MtsaError, match="target differ"):
        folder.check_can_start({"target": "y"}, resume=True, changeable=())
    with pytest.raises(MtsaError, match="seed differ"):  # any setting the run recorded, not a chosen few
        folder.check_can_start({"target": "x", "seed": 7}, resume=True, changeable=("concurrency",))
    folder.check_can_start({"target": "x", "seed": 0, "concurrency": 4, "new_setting": 1}, resume=True,
                           changeable=("concurrency",))
    written = json.loads((folder.path / "config.json").read_text())
    assert written == {"target": "x", "seed": 0, "concurrency": 16, "dtypes": written["dtypes"]}


def test_one_goal_file_named_relative_or_absolute_is_the_same_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "goals.jsonl").write_text('{"goal": "g"}\n')
    (tmp_path / "other.jsonl").write_text('{"goal": "g"}\n')
    folder = RunFolder(tmp_path / "run")
    folder.start({"goals": "goals.jsonl"})
    folder.check_can_start({"goals": str(tmp_path / "goals.jsonl")}, resume=True, changeable=())
    with pytest.raises(MtsaError, match="goals differ"):
        folder.check_can_start({"goals": "other.jsonl"}, resume=True, changeable=())
    with pytest.raises(MtsaError, match="goals differ"):
        folder.check_can_start({"goals": "builtin"}, resume=True, changeable=())


def test_a_run_resumes_only_from_the_folder_it_was_started_in(tmp_path, monkeypatch):
    from mtsa.redteam import RedteamConfig

    started, elsewhere = tmp_path / "a", tmp_path / "b"
    for place in (started, elsewhere):  # the same relative name, two different files
        place.mkdir()
        (place / "goals.jsonl").write_text('{"goal": "g"}\n')
    monkeypatch.chdir(started)
    config = RedteamConfig(goals="goals.jsonl", out=str(tmp_path / "run"))
    folder = RunFolder(tmp_path / "run")
    folder.start(config.resolved(config.out))
    monkeypatch.chdir(elsewhere)
    with pytest.raises(MtsaError, match=f"started in '{started}': resume it from there"):
        folder.check_can_start(config.resolved(config.out), resume=True, changeable=())
    monkeypatch.chdir(started)
    folder.check_can_start(config.resolved(config.out), resume=True, changeable=())
    moved = tmp_path / "moved"  # a project folder moved or renamed: its relative paths still hold
    started.rename(moved)
    monkeypatch.chdir(moved)
    folder.check_can_start(config.resolved(config.out), resume=True, changeable=())


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


def test_a_locked_run_is_refused_also_while_a_stage_it_started_lives_on(tmp_path):
    import subprocess
    import sys

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    with folder.lock():
        with pytest.raises(MtsaError, match="in use by another mtsa process"):
            with folder.lock():
                pass
        # as `stages.run_stage` starts an update: the child inherits the lock
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], close_fds=False)
    try:
        with pytest.raises(MtsaError, match="in use"):  # the parent is gone, its update is not
            with folder.lock():
                pass
    finally:
        child.kill()
        child.wait()
    with folder.lock():  # free again
        pass


def test_a_dialogue_appended_twice_counts_once(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.start({})
    for goal_id in ("g1", "g2", "g1"):
        folder.append(record(goal_id))
    assert [d.goal_id for d in folder.finished()] == ["g1", "g2"]
