"""A run folder: resolved config, dialogues appended as they finish, summary at the end.

The config also records the dtype each model of the process was loaded in, and why
(`models/dtype.py`): the same command runs in bfloat16 on one CPU and float32 on another.

Crash safety: each finished dialogue is one JSON line written with a single `write`, then
flushed and fsynced, so a `kill -9` loses at most the line being written. On `--resume`
a torn last line is cut off, finished dialogues (by rollout id) are skipped, and the rest are run. The config
and summary are written to a temporary file and renamed into place (atomic on POSIX).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mtsa.atomic import check_folder_can_be_made, write_json_atomic
from mtsa.errors import MtsaError, first_line
from mtsa.models.dtype import chosen_dtypes
from mtsa.rollout.records import DialogueRecord

log = logging.getLogger(__name__)

CONFIG = "config.json"
DIALOGUES = "dialogues.jsonl"
SUMMARY = "summary.json"
LOCK = ".lock"
STARTED_IN = "started_in"  # the working directory a run began in: its settings' relative paths are relative to it


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_can_start(self, config: dict, resume: bool, changeable: tuple[str, ...]) -> None:
        """Refuse to overwrite a run, to resume one that is not there, or to resume one with other
        settings than it started with: a setting both configs record must be the same, except the
        `changeable` ones, which change how the run goes, not what it produces. (A resumed run
        whose seed or sampling changed would hold dialogues of two runs under one config.)
        Creates nothing."""
        check_folder_can_be_made(self.path)
        existing = self.path / CONFIG
        if not existing.is_file():
            if resume:  # a typo in --out would otherwise start a new run, from the defaults
                raise MtsaError(f"no run to resume in '{self.path}' (no {CONFIG}); without --resume a new one starts")
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
        started_in = old.get(STARTED_IN)
        if isinstance(started_in, str) and not _same_setting(started_in, config.get(STARTED_IN)):
            if Path(started_in).is_dir():  # files under the same relative names there and here: which?
                raise MtsaError(f"'{self.path}' was started in '{started_in}': resume it from there "
                                "(the files its settings name are relative to that folder)")
            log.warning("'%s' was started in '%s', which is gone (moved?): its relative paths are read from "
                        "here", self.path, started_in)
        changed = [key for key in config if key in old and key not in (*changeable, STARTED_IN)
                   and not _same_setting(old[key], config[key])]
        if changed:
            raise MtsaError(f"cannot resume '{self.path}': {', '.join(changed)} "
                            f"{'differs' if len(changed) == 1 else 'differ'} from the original run "
                            f"(only {', '.join(changeable)} may change)")

    @contextmanager
    def lock(self) -> Iterator[int]:
        """Hold the folder's lock while the run works in it; yields the lock's file descriptor.

        Two processes in one run folder would both run its unfinished dialogues and append them
        twice; a second one is refused instead. The descriptor is inheritable: a stage process
        started meanwhile (`stages.run_stage`) holds the lock too, so a resume is also refused while
        an update runs on after its parent was killed. Where there is no `fcntl` (Windows), or the
        file system has no locks (some network ones), runs are not locked, with a warning."""
        try:
            import fcntl
        except ImportError:
            yield -1
            return
        descriptor = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MtsaError(f"'{self.path}' is in use by another mtsa process (a run still going, or an "
                                "update it started); wait for it to end or stop it, then resume") from None
            except OSError as exc:
                log.warning("cannot lock %s (%s): nothing stops a second process from working in it", self.path, exc)
            os.set_inheritable(descriptor, True)
            yield descriptor
        finally:
            os.close(descriptor)

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
        records: dict[str, DialogueRecord] = {}  # by rollout id: the first record of a dialogue counts
        for number, line in enumerate(data.split(b"\n"), start=1):
            if line.strip():
                try:
                    record = DialogueRecord.from_json(json.loads(line))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    raise MtsaError(f"{path}, line {number}: not a dialogue record ({type(exc).__name__}: "
                                    f"{first_line(exc)[:80]}); remove that line (its dialogue is then run again) "
                                    "and resume") from None
                records.setdefault(record.rollout_id, record)
        return list(records.values())

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
