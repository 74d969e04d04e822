"""Keys and values kept across `generate` calls, so that a dialogue's next call prefills only
what is new.

A multi-turn rollout sends each dialogue back to the model many times, each prompt extending
the last: a resampled attacker turn repeats its prompt exactly, and the next turn adds only the
latest exchange. Without this cache every call prefills every dialogue's whole history again
(after the batch's shared system prompt, which `hf.py` caches separately), a large share of a
later turn's time on a CPU (benchmarks/RESULTS.md). Here the HF backend stores each row's keys
and values after a call (prompt and reply), and the next call reuses the longest run of tokens
a new prompt shares with a stored one, as vLLM's prefix caching does. A token's keys and values
depend only on the tokens before it, so a reused run gives what a fresh prefill would (up to
rounding).

Entries are evicted least recently used first, within a memory budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Entry:
    """Keys and values of `tokens[start:]` (one [heads, length, dim] tensor per layer)."""

    tokens: tuple[int, ...]
    start: int
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.keys) + sum(t.nbytes for t in self.values)


@dataclass(frozen=True)
class Reuse:
    """`length` tokens of a prompt, from index `start`, whose keys and values are in `entry`."""

    entry: Entry
    start: int
    length: int

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values) of the reused tokens in layer `index`, [heads, length, dim] each."""
        offset = self.start - self.entry.start
        span = slice(offset, offset + self.length)
        return self.entry.keys[index][:, span], self.entry.values[index][:, span]


class KVReuseCache:
    """Recent rows' keys and values, looked up by the longest common token prefix."""

    def __init__(self, budget_mb: float) -> None:
        self.budget = int(budget_mb * 2**20)
        self.entries: OrderedDict[tuple[int, ...], Entry] = OrderedDict()
        self.nbytes = 0

    def lookup(self, prompt: list[int], start: int) -> Reuse | None:
        """The longest stored run of `prompt[start:]`, leaving at least its last token to compute
        (the model needs one new position to produce the next token's logits)."""
        best: Reuse | None = None
        for entry in reversed(self.entries.values()):  # most recent first
            if entry.start > start:
                continue
            length = _common_prefix(prompt, entry.tokens, limit=len(prompt) - 1) - start
            if length > 0 and (best is None or length > best.length):
                best = Reuse(entry, start, length)
        if best is not None:
            self.entries.move_to_end(best.entry.tokens)
        return best

    def store(self, entry: Entry) -> None:
        """Keep `entry`, dropping those it makes useless (a run of its tokens, held from the same
        or a later start), then the least recently used ones beyond the budget."""
        if entry.nbytes > self.budget:
            return
        for old in [e for e in self.entries.values()
                    if e.start >= entry.start and entry.tokens[:len(e.tokens)] == e.tokens]:
            del self.entries[old.tokens]
            self.nbytes -= old.nbytes
        self.entries[entry.tokens] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.budget:
            _, evicted = self.entries.popitem(last=False)
            self.nbytes -= evicted.nbytes


def _common_prefix(a: list[int], b: tuple[int, ...], limit: int) -> int:
    """Length of the common prefix of `a` and `b`, at most `limit` (chunks compared at C speed,
    since prompts of one run share hundreds of system-prompt tokens)."""
    length, index, chunk = min(len(a), len(b), limit), 0, 64
    while index + chunk <= length and tuple(a[index:index + chunk]) == b[index:index + chunk]:
        index += chunk
    while index < length and a[index] == b[index]:
        index += 1
    return index
