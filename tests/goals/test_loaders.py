"""Tests for mtsa.goals.loaders: every source format, column fallbacks, ids, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mtsa.errors import MtsaError
from mtsa.goals.loaders import Goal, goal_id, load_goals, read_rows

TRAIN_GOALS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train_goals.json"


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def jsonl(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def error_of(source: str, limit: int | None = None) -> str:
    with pytest.raises(MtsaError) as info:
        load_goals(source, limit=limit)
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


# ---------------------------------------------------------------- formats


def test_json_list_of_objects(tmp_path):
    src = write(tmp_path / "g.json", json.dumps([{"goal": "A", "category": "c1"}, {"goal": "B"}]))
    assert [(g.goal, g.category) for g in load_goals(src)] == [("A", "c1"), ("B", "")]


def test_json_list_of_strings(tmp_path):
    src = write(tmp_path / "g.json", json.dumps(["first goal", "second goal"]))
    assert [g.goal for g in load_goals(src)] == ["first goal", "second goal"]


@pytest.mark.parametrize("key", ["data", "goals"])
def test_json_object_holding_a_list(tmp_path, key):
    src = write(tmp_path / "g.json", json.dumps({"meta": {"v": 1}, key: [{"prompt": "P"}, "S"]}))
    assert [g.goal for g in load_goals(src)] == ["P", "S"]


def test_jsonl(tmp_path):
    src = write(tmp_path / "g.jsonl", jsonl([{"goal": "A", "category": "x"}, "B"]) + "\n  \n")
    assert [(g.goal, g.category) for g in load_goals(src)] == [("A", "x"), ("B", "")]


def test_csv_with_harmbench_columns(tmp_path):
    src = write(tmp_path / "g.csv",
                "Behavior,FunctionalCategory,SemanticCategory\n"
                "Do thing one,standard,cybercrime\n"
                '"Do thing, two",standard,chemical\n')
    goals = load_goals(src)
    assert [(g.goal, g.category) for g in goals] == [
        ("Do thing one", "cybercrime"), ("Do thing, two", "chemical")]


def test_csv_with_bom_and_first_column_fallback(tmp_path):
    path = tmp_path / "g.csv"
    path.write_bytes("\ufefftext_col,other\nhello there,x\n".encode("utf-8"))
    assert [g.goal for g in load_goals(str(path))] == ["hello there"]


# ---------------------------------------------------------------- column choice


@pytest.mark.parametrize("row, expected", [
    ({"other": "o", "prompt": "p", "goal": "g"}, "g"),
    ({"other": "o", "behavior": "b", "prompt": "p"}, "p"),
    ({"other": "o", "behavior": "b"}, "b"),
    ({"other": "o", "Behavior": "B"}, "B"),
    ({"other": "o", "GOAL": "G"}, "G"),
    ({"other": "o", "Prompt": "P"}, "P"),
    ({"other": "o", "attack_goal": "AG"}, "AG"),
    ({"first": "F", "second": "S"}, "F"),
])
def test_goal_column_fallbacks(tmp_path, row, expected):
    src = write(tmp_path / "g.jsonl", jsonl([row]))
    assert load_goals(src)[0].goal == expected


@pytest.mark.parametrize("key", ["category", "Category", "SemanticCategory", "type", "CATEGORY"])
def test_category_columns(tmp_path, key):
    src = write(tmp_path / "g.jsonl", jsonl([{"goal": "G", key: "weapons"}]))
    assert load_goals(src)[0].category == "weapons"


# ---------------------------------------------------------------- ids, duplicates, limit


def test_ids_are_stable_and_whitespace_insensitive(tmp_path):
    a = write(tmp_path / "a.json", json.dumps(["Do  the\tthing "]))
    b = write(tmp_path / "b.csv", "goal\nDo the thing\n")
    ga, gb = load_goals(a)[0], load_goals(b)[0]
    assert ga == gb == Goal(id=goal_id("Do the thing"), goal="Do the thing")
    assert len(ga.id) == 12 and all(c in "0123456789abcdef" for c in ga.id)
    assert ga.id == "ef6672b42a82"  # pinned: ids must never change between versions
    assert goal_id("Do the thing") != goal_id("Do the thing!")


def test_id_is_sha1_of_normalised_text():
    import hashlib
    assert goal_id("  a   b ") == hashlib.sha1(b"a b").hexdigest()[:12]


def test_blank_goals_skipped_and_duplicates_dropped(tmp_path, caplog):
    src = write(tmp_path / "g.jsonl",
                jsonl([{"goal": "A", "category": "first"}, {"goal": "  "}, {"goal": None},
                       {"goal": "B"}, {"goal": "A ", "category": "second"}, "B", ""]))
    with caplog.at_level(logging.WARNING, logger="mtsa.goals.loaders"):
        goals = load_goals(src)
    assert [(g.goal, g.category) for g in goals] == [("A", "first"), ("B", "")]
    assert "2 duplicate" in caplog.text


def test_limit_applies_after_dedup(tmp_path):
    src = write(tmp_path / "g.json", json.dumps(["A", "A", "B", "C"]))
    assert [g.goal for g in load_goals(src, limit=2)] == ["A", "B"]
    assert [g.goal for g in load_goals(src, limit=10)] == ["A", "B", "C"]


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "3"])
def test_invalid_limit(limit):
    assert "limit" in error_of("builtin", limit=limit)


# ---------------------------------------------------------------- hf: sources (local only)


def test_hf_local_folder_of_jsonl(tmp_path):
    folder = tmp_path / "ds"
    write(folder / "data.jsonl", jsonl([{"prompt": "P1", "category": "c"}, {"prompt": "P2"}]))
    goals = load_goals(f"hf:{folder}")
    assert [(g.goal, g.category) for g in goals] == [("P1", "c"), ("P2", "")]


def test_hf_local_folder_of_csv_with_split(tmp_path):
    folder = tmp_path / "ds"
    write(folder / "train.csv", "Behavior,SemanticCategory\nT1,x\n")
    write(folder / "test.csv", "Behavior,SemanticCategory\nE1,y\nE2,z\n")
    assert [g.goal for g in load_goals(f"hf:{folder}:test")] == ["E1", "E2"]
    assert [g.goal for g in load_goals(f"hf:{folder}")] == ["T1"]


def test_hf_dataset_with_several_configurations(tmp_path):
    """As walledai/HarmBench (standard, contextual, copyright): hf:NAME:CONFIG:SPLIT."""
    folder = tmp_path / "bench"
    configs = "".join(f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train.csv\n"
                      for c in ("standard", "contextual"))
    write(folder / "README.md", f"---\nconfigs:\n{configs}---\n")
    write(folder / "standard" / "train.csv", "prompt\nS1\nS2\n")
    write(folder / "contextual" / "train.csv", "prompt\nC1\n")
    assert [g.goal for g in load_goals(f"hf:{folder}:standard:train")] == ["S1", "S2"]
    assert [g.goal for g in load_goals(f"hf:{folder}:contextual:train")] == ["C1"]
    assert "hf:<name>:<config>:<split>" in error_of(f"hf:{folder}:standard")  # a config is not a split
    assert [g.goal for g in load_goals(f"hf:{folder}:standard:")] == ["S1", "S2"]  # the split defaults to train


def test_hf_local_path_with_a_colon_stays_whole(tmp_path):
    folder = tmp_path / "a:b"
    write(folder / "goals.jsonl", jsonl([{"goal": "G1"}]))
    assert [g.goal for g in load_goals(f"hf:{folder}/goals.jsonl:train")] == ["G1"]
    assert [g.goal for g in load_goals(f"hf:{folder}")] == ["G1"]
    assert "no configurations" in error_of(f"hf:{folder}/goals.jsonl:cfg:train")


def test_hf_local_file(tmp_path):
    src = write(tmp_path / "one.jsonl", jsonl([{"goal": "G1"}, {"goal": "G2"}]))
    assert [g.goal for g in load_goals(f"hf:{src}", limit=1)] == ["G1"]


def test_hf_bad_split_names_dataset(tmp_path):
    folder = tmp_path / "ds"
    write(folder / "data.jsonl", jsonl([{"goal": "G"}]))
    message = error_of(f"hf:{folder}:nosuchsplit")
    assert str(folder) in message and "nosuchsplit" in message


def test_hf_missing_local_folder(tmp_path):
    assert "nowhere" in error_of(f"hf:{tmp_path / 'nowhere'}")


def test_hf_any_failure_is_wrapped(monkeypatch):
    import datasets

    def boom(*args, **kwargs):
        raise ConnectionError("hub unreachable\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    message = error_of("hf:someone/some-dataset:test")
    assert "someone/some-dataset" in message and "hub unreachable" in message


def test_hf_without_name():
    assert "hf:" in error_of("hf:")


# ---------------------------------------------------------------- built-in set and shared data


def test_builtin_set():
    goals = load_goals("builtin")
    assert len(goals) >= 45
    assert len({g.category for g in goals}) >= 8
    assert len({g.id for g in goals}) == len(goals)
    assert all(g.goal.strip() and g.category for g in goals)
    assert load_goals("builtin") == goals  # ids stable across loads


def test_builtin_file_is_one_object_per_line():
    from importlib import resources

    text = resources.files("mtsa.goals").joinpath("builtin.jsonl").read_text(encoding="utf-8")
    for line in text.splitlines():
        row = json.loads(line)
        assert set(row) == {"goal", "category"}


@pytest.mark.skipif(not TRAIN_GOALS.is_file(), reason="shared training goals not present")
def test_shared_train_goals():
    goals = load_goals(str(TRAIN_GOALS))
    assert len(goals) > 1000
    assert len({g.id for g in goals}) == len(goals)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    message = error_of(str(missing))
    assert str(missing) in message and "not found" in message


def test_unknown_extension(tmp_path):
    src = write(tmp_path / "goals.txt", "a goal\n")
    message = error_of(src)
    assert src in message and ".txt" in message


def test_folder_without_hf_prefix(tmp_path):
    assert "hf:" in error_of(str(tmp_path))


def test_malformed_json(tmp_path):
    src = write(tmp_path / "g.json", '[\n  {"goal": "A"},\n  {"goal": \n]')
    message = error_of(src)
    assert src in message and "malformed JSON" in message and "line 4" in message


def test_malformed_jsonl_names_line(tmp_path):
    src = write(tmp_path / "g.jsonl", '{"goal": "A"}\n\n{"goal": "B"\n')
    message = error_of(src)
    assert src in message and "line 3" in message


def test_json_object_without_list(tmp_path):
    src = write(tmp_path / "g.json", json.dumps({"name": "x", "a": [1], "b": [2]}))
    assert src in error_of(src)


def test_json_scalar(tmp_path):
    src = write(tmp_path / "g.json", "42")
    assert src in error_of(src)


@pytest.mark.parametrize("text", ["", "goal,category\n"])
def test_csv_without_rows(tmp_path, text):
    src = write(tmp_path / "g.csv", text)
    message = error_of(src)
    assert src in message and "no rows" in message


@pytest.mark.parametrize("rows", [[{"goal": 3}], [{"id": 7, "text2": 1}], [{}], [[1, 2]], [5]])
def test_rows_without_usable_text(tmp_path, rows):
    src = write(tmp_path / "g.json", json.dumps(rows))
    message = error_of(src)
    assert src in message and "row 1" in message


@pytest.mark.parametrize("content", ["[]", '["", "   "]', '[{"goal": null}]'])
def test_empty_goal_set(tmp_path, content):
    src = write(tmp_path / "g.json", content)
    message = error_of(src)
    assert src in message and "no goals" in message


def test_jsonl_lines_end_at_newline_only(tmp_path):
    # JSON leaves U+2028, U+2029 and U+0085 unescaped inside strings, and model replies hold them:
    # a reader splitting at them (str.splitlines) broke a demo's SFT data in two.
    from mtsa.atomic import write_jsonl_atomic

    rows = [{"goal": "a\u2028b", "reply": "c\u2029d\x85e"}, {"goal": "plain"}]
    path = tmp_path / "rows.jsonl"
    write_jsonl_atomic(path, rows)
    assert read_rows(path) == rows
    path.write_text(path.read_text(encoding="utf-8").replace("\n", "\r\n"), encoding="utf-8", newline="")
    assert read_rows(path) == rows  # Windows line endings too


def test_lone_surrogates_are_made_writable_and_deep_nesting_is_malformed(tmp_path):
    # "\ud800" is valid JSON, but no UTF-8 file can hold the string it makes: the first write of
    # the row (a scored file, a dialogue) would fail after the work was done
    path = write(tmp_path / "rows.jsonl", '{"goal": "a\\ud800b", "emoji": "\\ud83d\\ude00"}\n')
    assert read_rows(Path(path)) == [{"goal": "a?b", "emoji": "\U0001F600"}]
    assert load_goals(write(tmp_path / "g.json", '["x\\udfffy"]'))[0].goal == "x?y"
    message = error_of(write(tmp_path / "deep.json", "[" * 100_000))
    assert "malformed JSON" in message and "nested too deeply" in message


def test_label_keeps_the_rows_of_one_label(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt,label\nkill a process,safe\nhurt someone,unsafe\nkill the lights,safe\n")
    assert [g.goal for g in load_goals(str(path), label="safe")] == ["kill a process", "kill the lights"]
    with pytest.raises(MtsaError, match="no row has label 'benign' \\(labels: safe, unsafe\\)"):
        load_goals(str(path), label="benign")
    unlabelled = tmp_path / "goals.jsonl"
    unlabelled.write_text('{"goal": "g"}\n')
    with pytest.raises(MtsaError, match="no `label` column"):
        load_goals(str(unlabelled), label="safe")
