"""Load red-team attack goals from the built-in set, local files, or Hugging Face datasets.

Every source ends up as a list of `Goal`s with a stable `id`, so that an interrupted run
can be resumed by skipping the ids it has already finished, whatever file the goals came
from. Anything wrong with the source is a user error and raises `MtsaError` in one line
that names the source and the problem.

Sources (`load_goals(source)`):
    builtin                the goal set shipped with the package (goals/builtin.jsonl)
    path/to/goals.json     a list of objects or strings, or an object holding one
                           under "data", "goals", ... (see `_JSON_LIST_KEYS`)
    path/to/goals.jsonl    one object or string per line
    path/to/goals.csv      a header row, then one goal per row
    hf:<name>[:split]      `datasets.load_dataset(name, split=split or "train")`; name may
                           also be a local folder of data files or a single data file
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from mtsa.errors import MtsaError, first_line

log = logging.getLogger(__name__)

BUILTIN = "builtin"

# Column names tried for the goal text, in order; then case-insensitive matches of
# `_GOAL_LIKE`, then any column whose name contains "goal", then the first column.
_GOAL_COLUMNS = ("goal", "prompt", "behavior", "Behavior")
_GOAL_LIKE = ("goal", "goals", "prompt", "behavior", "behaviour", "instruction", "query",
              "question", "request", "text")
_CATEGORY_COLUMNS = ("category", "Category", "SemanticCategory", "type")
# Keys under which a JSON object may hold the list of goals.
_JSON_LIST_KEYS = ("data", "goals", "rows", "items", "examples", "instances", "prompts")
# File extensions `datasets` can load directly, for `hf:<local file>`.
_HF_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet",
                     ".txt": "text"}


@dataclass(frozen=True)
class Goal:
    """One attack goal. `id` depends only on the normalised text, so it is stable across
    runs and sources and can be used to resume a run."""

    id: str
    goal: str
    category: str = ""

    @classmethod
    def from_text(cls, text: str, category: str = "") -> "Goal":
        """Build a goal with its text whitespace-collapsed and its id derived from it."""
        text = normalise(text)
        return cls(id=goal_id(text), goal=text, category=category.strip())


def normalise(text: str) -> str:
    """Collapse runs of whitespace and strip, so cosmetic differences do not change ids."""
    return " ".join(text.split())


def goal_id(text: str) -> str:
    """Stable short id: the first 12 hex digits of the SHA-1 of the normalised text."""
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()[:12]


def load_goals(source: str, limit: int | None = None, label: str | None = None) -> list[Goal]:
    """Load goals from `source`, skip blank ones, drop exact duplicates (first kept) and
    keep the first `limit` (>= 1) if given; with `label`, only the rows whose `label` column
    holds it (XSTest's prompt file marks each prompt safe or unsafe there)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MtsaError(f"invalid goal limit {limit!r}: it must be a whole number >= 1")
    source = str(source).strip()
    if source == BUILTIN:
        text = resources.files("mtsa.goals").joinpath("builtin.jsonl").read_text(encoding="utf-8")
        rows = _parse_jsonl(text, "built-in goal set")
        origin = "built-in goal set"
    elif source.startswith("hf:"):
        rows, origin = _read_hf(source[3:])
    else:
        rows, origin = read_rows(Path(source).expanduser()), source
    if label is not None:
        labelled = [row for row in rows if isinstance(row, dict) and "label" in row]
        if not labelled:
            raise MtsaError(f"{origin}: no `label` column to keep '{label}' rows by")
        rows = [row for row in labelled if str(row["label"]) == label]
        if not rows:
            raise MtsaError(f"{origin}: no row has label '{label}' (labels: "
                            f"{', '.join(sorted({str(row['label']) for row in labelled})[:5])})")
    goals = _dedupe(_rows_to_goals(rows, origin), origin)
    return goals[:limit] if limit is not None else goals


# ---------------------------------------------------------------- one reader per format


def read_rows(path: Path) -> list[Any]:
    """Read a local .json / .jsonl / .csv file into rows (objects or strings); `mtsa judge` reuses it."""
    readers = {".json": _parse_json, ".jsonl": _parse_jsonl, ".csv": _parse_csv}
    reader = readers.get(path.suffix.lower())
    if path.is_dir():
        raise MtsaError(f"{path}: is a folder; to load a folder of data files use hf:{path}")
    if not path.is_file():
        raise MtsaError(f"{path}: file not found")
    if reader is None:
        raise MtsaError(f"{path}: unknown file extension {path.suffix!r} "
                        "(expected .json, .jsonl or .csv, or use 'builtin' or hf:<dataset>)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MtsaError(f"{path}: cannot read file: {first_line(e)}") from e
    return reader(text, str(path))


def _parse_json(text: str, origin: str) -> list[Any]:
    """A JSON list, or an object holding the list under a usual key (or as its only list)."""
    try:
        data = _loads(text)
    except json.JSONDecodeError as e:
        raise MtsaError(f"{origin}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if isinstance(data, dict):
        lists = [k for k in _JSON_LIST_KEYS if isinstance(data.get(k), list)]
        if not lists:
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) != 1:
                raise MtsaError(f"{origin}: JSON object holds no list of goals under one of "
                                f"{', '.join(_JSON_LIST_KEYS)}")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise MtsaError(f"{origin}: JSON must be a list of goals, not {type(data).__name__}")
    return data


def _parse_jsonl(text: str, origin: str) -> list[Any]:
    """One JSON value per non-blank line; the error names the offending line.

    Lines end at "\n" only: str.splitlines would also cut at U+2028, U+2029 and U+0085, which
    JSON leaves unescaped inside strings and model outputs do contain."""
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_loads(line))
        except json.JSONDecodeError as e:
            raise MtsaError(f"{origin}: malformed JSON on line {lineno}: {e.msg}") from e
    return rows


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _loads(text: str) -> Any:
    """`json.loads`, with lone surrogates (`"\\ud800"`: valid JSON that no UTF-8 file can hold,
    so the first write of the row would fail) made "?", and nesting too deep for Python called
    malformed."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    return _writable(data) if _SURROGATE_ESCAPE.search(text) else data


def _writable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_writable(v) for v in value]
    if isinstance(value, dict):
        return {_writable(k): _writable(v) for k, v in value.items()}
    return value


def _parse_csv(text: str, origin: str) -> list[Any]:
    """A CSV with a header row; columns keep their file order (the first is the fallback)."""
    try:
        rows = [{k: v for k, v in row.items() if k is not None}
                for row in csv.DictReader(io.StringIO(text))]
    except csv.Error as e:
        raise MtsaError(f"{origin}: malformed CSV: {first_line(e)}") from e
    if not rows:
        raise MtsaError(f"{origin}: CSV has no rows (a header row and at least one goal are needed)")
    return rows


def _hf_parts(spec: str) -> tuple[str, str | None, str]:
    """(name, config or None, split) of `<name>[:split]` or `<name>:<config>:<split>`, read from the
    right, so that a local path holding a colon (a Windows drive) stays whole."""
    if ":" not in spec or Path(spec).expanduser().exists():
        return spec.strip(), None, "train"
    name, _, split = spec.rpartition(":")
    config = None
    if ":" in name and not Path(name).expanduser().exists():
        name, _, config = name.rpartition(":")
    return name.strip(), (config or "").strip() or None, split.strip() or "train"


def _read_hf(spec: str) -> tuple[list[Any], str]:
    """`<name>[:split]` or `<name>:<config>:<split>` (a dataset with several configurations, such
    as HarmBench's standard/contextual/copyright) through `datasets.load_dataset`; any failure
    becomes an MtsaError."""
    name, config, split = _hf_parts(spec)
    origin = ":".join(["hf", name, *([config] if config else []), split])
    if not name:
        raise MtsaError(f"hf:{spec}: no dataset name given (expected hf:<name>[:split])")
    try:
        import datasets

        local = Path(name).expanduser()
        if local.is_file():
            if config:
                raise MtsaError(f"{origin}: a data file has no configurations (expected hf:<file>[:split])")
            builder = _HF_FILE_BUILDERS.get(local.suffix.lower())
            if builder is None:
                raise MtsaError(f"{origin}: unknown data file extension {local.suffix!r}")
            ds = datasets.load_dataset(builder, data_files=str(local), split=split)
        else:
            ds = datasets.load_dataset(str(local) if local.is_dir() else name, config, split=split)
        rows = list(ds)
    except MtsaError:
        raise
    except Exception as e:  # network, missing dataset, bad split, bad files: all user-fixable
        hint = " (a dataset with several configurations: hf:<name>:<config>:<split>)" if not config else ""
        raise MtsaError(f"could not load Hugging Face dataset {name!r} (split {split!r}): "
                        f"{type(e).__name__}: {first_line(e)}{hint}") from e
    return rows, origin


# ---------------------------------------------------------------- rows to goals


def _rows_to_goals(rows: Iterable[Any], origin: str) -> list[Goal]:
    """Turn rows (strings or objects) into goals, skipping blank ones."""
    goals = []
    for n, row in enumerate(rows, start=1):
        if isinstance(row, str):
            text, category = row, ""
        elif isinstance(row, dict):
            text, category = _text_and_category(row, origin, n)
        else:
            raise MtsaError(f"{origin}: row {n} is a {type(row).__name__}, "
                            "expected an object or a string")
        if text and text.strip():
            goals.append(Goal.from_text(text, category))
    if not goals:
        raise MtsaError(f"{origin}: no goals found (every row is blank)")
    return goals


def _text_and_category(row: dict[str, Any], origin: str, n: int) -> tuple[str | None, str]:
    """Pick the goal column and the category column of one object row."""
    column = _goal_column(list(row))
    if column is None:
        raise MtsaError(f"{origin}: row {n} has no columns to take a goal from")
    text = row[column]
    if text is not None and not isinstance(text, str):
        raise MtsaError(f"{origin}: row {n} has no usable text column "
                        f"(column {column!r} holds a {type(text).__name__}; "
                        f"columns: {', '.join(map(str, row))})")
    category = next((row[c] for c in _CATEGORY_COLUMNS if row.get(c) is not None), None)
    if category is None:
        category = next((v for k, v in row.items()
                         if str(k).lower() == "category" and v is not None), "")
    return text, str(category)


def _goal_column(columns: list[str]) -> str | None:
    """The goal text column: exact names, then goal-like names in any case, then the first."""
    for name in _GOAL_COLUMNS:
        if name in columns:
            return name
    lowered = {str(c).lower(): c for c in reversed(columns)}  # first match wins
    for name in _GOAL_LIKE:
        if name in lowered:
            return lowered[name]
    for c in columns:
        if "goal" in str(c).lower():
            return c
    return columns[0] if columns else None


def _dedupe(goals: list[Goal], origin: str) -> list[Goal]:
    """Drop goals whose id was already seen (same normalised text), keeping the first."""
    seen: set[str] = set()
    unique = [g for g in goals if not (g.id in seen or seen.add(g.id))]
    if len(unique) < len(goals):
        log.warning("%s: dropped %d duplicate goal(s)", origin, len(goals) - len(unique))
    return unique
