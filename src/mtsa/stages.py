"""Running a step of a pipeline as its own `mtsa` process: the demo's stages and Stage 2's
updates. The command is the one a user would type (printed first), so every step can be rerun
by hand; a process per step hands its memory back before the next one starts, and a launcher
(`accelerate launch ...`) can run a step on many GPUs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mtsa.errors import MtsaError

# glibc malloc settings for the stage processes: one arena, and tensors over 1 MiB in their own
# mappings handed back on free, because the default arenas keep freed activation buffers and
# the SFT stage's peak memory grows markedly (benchmarks/RESULTS.md). Ignored elsewhere.
LEAN_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "0"}


def launcher_program(launcher: str | None) -> list[str]:
    """The launcher's words (this Python when there is none), its program found on the PATH or
    beside this Python (a virtual environment's `accelerate`, not activated), or a one-line
    error for one that cannot start: checked before a run's first phase, not by its first update."""
    if not launcher:
        return [sys.executable]
    try:
        words = shlex.split(launcher)
    except ValueError as exc:
        raise MtsaError(f"--update-launcher {launcher!r}: {exc}") from None
    program = words and (shutil.which(words[0]) or shutil.which(words[0], path=str(Path(sys.executable).parent)))
    if not program:
        raise MtsaError(f"--update-launcher {launcher!r}: no program {words[0] if words else ''!r} on the PATH")
    return [program, *words[1:]]


def run_stage(command: str, launcher: str | None = None, **settings) -> None:
    """Run one stage as its own `mtsa` process, the command a user would type (printed first).

    A process per stage hands each stage's memory back before the next one starts, so the
    demo's peak is that of its largest stage (the SFT), not the sum of all five. `launcher`
    (e.g. "accelerate launch --config_file ddp.yaml") runs the stage instead of this Python.
    """
    argv = [command]
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    program = launcher_program(launcher)
    print(f"  $ {launcher + ' -m mtsa.cli' if launcher else 'mtsa'} " + " ".join(argv), flush=True)
    env = {**LEAN_MALLOC, **os.environ}  # the user's own settings win
    # close_fds=False passes on the inheritable descriptors only, which Python's own never are:
    # the run folder lock a `mtsa train` holds, so that the stage holds it too (RunFolder.lock)
    code = subprocess.run([*program, "-m", "mtsa.cli", *argv], env=env, check=False, close_fds=False).returncode
    if code:
        raise MtsaError(f"the '{command}' stage failed (exit code {code}); "
                        "fix the cause above and rerun with --resume")
