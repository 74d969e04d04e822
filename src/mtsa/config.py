"""One dataclass per job; YAML files and CLI flags merge into it (flags win).

Every field becomes a `--flag` (underscores as dashes) whose help text is the field's
`help` metadata, so the dataclass is the single documentation of a job's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mtsa.errors import MtsaError

T = TypeVar("T")


def help_text(text: str) -> dict:
    """Field metadata holding the flag's --help line."""
    return {"help": text}


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per dataclass field; unset flags stay absent from the namespace."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = base_type(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else None
        helptext = field.metadata.get("help", "")
        if "(default:" not in helptext:  # a help that names its default itself (runs/redteam-<time>)
            helptext = f"{helptext} (default: {default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=field.name.upper(), help=helptext)


def build(cls: type[T], args: argparse.Namespace, config_file: str | None = None) -> T:
    """Defaults, then (when resuming) the settings the run was started with, then the YAML file,
    then the flags given on the command line.

    A job whose run folder saves its settings says where with a `saved_settings(out)` static
    method; `--out RUN --resume` alone then continues the run as it was started (a YAML file or
    flags given again still win, and the job refuses settings that would change the run)."""
    names = {field.name for field in dataclasses.fields(cls)}
    given: dict[str, Any] = {}
    if config_file:
        given.update(_read_yaml(Path(config_file), names))
    given.update({k: v for k, v in vars(args).items() if k in names})
    values: dict[str, Any] = {}
    if given.get("resume") and given.get("out") and hasattr(cls, "saved_settings"):
        values.update(_read_saved(cls.saved_settings(given["out"]), names - {"resume", "out"}))
    values.update(given)
    hints = typing.get_type_hints(cls)
    return cls(**{name: _typed(name, value, hints[name]) for name, value in values.items()})


def _typed(name: str, value: Any, hint: Any) -> Any:
    """A setting as its field's type, or a one-line error. Flags are typed by argparse already
    (though `--learning-rate nan` is a float); a YAML file or a run's config.json can hold
    anything (`turns: 2.7` would never reach its last turn, `stop_on_unsafe: "no"` is a true
    string)."""
    kind = base_type(hint)
    if value is None and kind is not hint:  # an optional setting left unset
        return None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):  # NaN passes every range check, then poisons training
            raise MtsaError(f"setting '{name}' must be a finite number, not {value}")
        return float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # `out: 12`, `goals: 2026`
    if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
        return value
    raise MtsaError(f"setting '{name}' must be {type_words(kind)}, not {value!r:.60}")


def type_words(kind: type) -> str:
    """What a setting or option of type `kind` must be, in the words of an error message."""
    return {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}.get(
        kind, kind.__name__)


def _read_saved(path: Path, names: set[str]) -> dict[str, Any]:
    """The settings a run folder recorded (its config.json); nothing if it has none yet (a run
    that crashed before writing it starts from the defaults, as it did the first time)."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise MtsaError(f"cannot read the run's settings {path}: {exc}") from None
    return {k: v for k, v in saved.items() if k in names} if isinstance(saved, dict) else {}


def _read_yaml(path: Path, names: set[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise MtsaError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MtsaError(f"cannot read config file '{path}': {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MtsaError(f"config file '{path}' must hold a mapping of settings")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - names)
    if unknown:
        raise MtsaError(f"unknown setting(s) in '{path}': {', '.join(unknown)}")
    return data


def base_type(hint: Any) -> type:
    """`int | None` -> int; plain types stay as they are."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint
