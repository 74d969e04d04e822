"""A run folder: resolved config, dialogues appended as they finish, summary at the end.

The config also records the dtype each model of the process was loaded in, and why
(`models/dtype.py`): the same command runs in bfloat16 on one CPU and float32 on another.

Crash safety: each finished dialogue is one JSON line written with a single `write`, then
flushed and fsynced, so a `kill -9` loses at most the line being written. On `--resume`
a torn last line is cut off, finished goals are skipped, and the rest are run. The config
and summary are written to a temporary file and renamed into place (atomic on POSIX).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mtsa.atomic import check_folder_can_be_made, write_json_atomic
from mtsa.errors import MtsaError, first_line
from mtsa.models.dtype import chosen_dtypes
from mtsa.rollout.records import DialogueRecord

CONFIG = "config.json"
DIALOGUES = "dialogues.jsonl"
SUMMARY = "summary.json"


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_can_start(self, config: dict, resume: bool, same_run_keys: tuple[str, ...]) -> None:
        """Refuse to overwrite a run, or to resume one with different settings. Creates nothing."""
        check_folder_can_be_made(self.path)
        existing = self.path / CONFIG
        if not existing.is_file():
            return
        if not resume:
            raise MtsaError(f"run folder '{self.path}' already holds a run; pass --resume to finish it "
                            "or choose another --out")
        try:
            old = json.loads(existing.read_text())
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            raise MtsaError(f"cannot read {existing}: {exc}") from None
        if not isinstance(old, dict):
            raise MtsaError(f"cannot read {existing}: it holds no settings")
        if old.get("command", config.get("command")) != config.get("command"):  # runs before 2026-11-30 have none
            raise MtsaError(f"'{self.path}' holds a `mtsa {old['command']}` run, which `mtsa {config['command']}` "
                            "cannot resume")
        changed = [key for key in same_run_keys if not _same_setting(old.get(key), config.get(key))]
        if changed:
            raise MtsaError(f"cannot resume '{self.path}': {', '.join(changed)} differ from the original run")

    def start(self, config: dict) -> None:
        """Create the folder and write the config; call it once the models are loaded."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / CONFIG, {**config, "dtypes": chosen_dtypes()})

    def finished(self) -> list[DialogueRecord]:
        """Dialogues already written; a torn last line (crash mid-write) is removed first."""
        path = self.path / DIALOGUES
        if not path.is_file():
            return []
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as file:
                file.truncate(keep)
            data = data[:keep]
        records = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if line.strip():
                try:
                    records.append(DialogueRecord.from_json(json.loads(line)))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    raise MtsaError(f"{path}, line {number}: not a dialogue record ({type(exc).__name__}: "
                                    f"{first_line(exc)[:80]}); remove that line (its dialogue is then run again) "
                                    "and resume") from None
        return records

    def append(self, record: DialogueRecord) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False) + "\n"
        with open(self.path / DIALOGUES, "a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.path / SUMMARY, summary)


def _same_setting(old: object, new: object) -> bool:
    """Equal values, or two spellings (relative, absolute, via a link) of one existing file:
    a run started with `--goals goals.jsonl` resumes with `--goals /abs/path/goals.jsonl`."""
    if old == new:
        return True
    if not (isinstance(old, str) and isinstance(new, str)):
        return False
    try:
        return os.path.samefile(old, new)
    except OSError:  # either is not a file (a model spec, a set's name...)
        return False
