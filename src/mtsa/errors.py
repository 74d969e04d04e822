"""The one exception type that reaches the user as a one-line message.

Anything the user can fix (a bad path, an unknown model spec, an unreachable server)
raises `MtsaError`; the CLI prints `mtsa: error: <message>` and exits with code 2.
Everything else is a bug and keeps its traceback.
"""


class MtsaError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__
