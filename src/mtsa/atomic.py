"""Writing result files so that a crash never leaves a half-written one behind, reading them back
with one-line errors, and checking before the work starts that an output folder can be made."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Iterable

from mtsa.errors import MtsaError, first_line


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`. The file gets
    the permissions of any other file the user creates (mkstemp's would be owner-only)."""
    temp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def check_folder_can_be_made(path: Path) -> None:
    """A one-line error now, before models load or work starts, if `path` cannot be (or be used
    as) a folder: it is a file, or the nearest part of it that exists is a file or is read-only."""
    if path.exists() and not path.is_dir():
        raise MtsaError(f"--out '{path}' exists and is not a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise MtsaError(f"--out '{path}': '{existing}' is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MtsaError(f"--out '{path}': cannot write in '{existing}'")


def read_json_object(path: Path) -> dict:
    """A JSON object from `path` ({} when there is none); a one-line error for a damaged file,
    which a person may have edited or a full disk cut short."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise MtsaError(f"cannot read {path}: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise MtsaError(f"cannot read {path}: it holds no JSON object")
    return data
