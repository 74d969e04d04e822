"""Values computed per text and remembered: a dialogue's goal is judged at every turn, so its
embedding, chat state and P(harmful) are computed once per run, not once per reply."""

from __future__ import annotations

from typing import Callable, Hashable, Iterable, Sequence


class TextMemo:
    """A bounded memo of per-text values, filled in batches (one encoder call for all new texts).

    When the new texts would take it past `size` it is emptied first, and then everything the
    call asks for is computed again: a memo that dropped some of the texts it is asked for would
    have nothing to return for them."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.values: dict[tuple, object] = {}

    def get(self, scope: tuple[Hashable, ...], texts: Sequence[str],
            compute: Callable[[list[str]], Iterable]) -> list:
        """The value of each text under `scope` (what else the value depends on: an encoder, a
        layer, a classifier), computing the missing ones with `compute(list of new texts)`."""
        def missing() -> list[str]:
            return sorted({t for t in texts if (*scope, t) not in self.values})

        new = missing()
        if new and len(self.values) + len(new) > self.size:
            self.values.clear()
            new = missing()
        if new:
            self.values.update(((*scope, t), value) for t, value in zip(new, compute(new), strict=True))
        return [self.values[(*scope, t)] for t in texts]

    def clear(self) -> None:
        self.values.clear()
