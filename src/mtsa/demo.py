"""`mtsa demo`: the main job on the embedded default, offline, in a few minutes on a laptop CPU.

Today it is a small multi-turn red-team: the embedded SmolLM2-135M attacks itself and the
embedded judge scores every reply. Sizes are chosen so that it finishes in minutes on two
CPU cores; every setting can still be overridden with the `redteam` flags.
"""

from __future__ import annotations

from mtsa.redteam import RedteamConfig

DEMO_DEFAULTS = {"limit": 8, "turns": 3, "concurrency": 8, "attacker_max_tokens": 128, "target_max_tokens": 160}


def demo_config(overrides: dict) -> RedteamConfig:
    return RedteamConfig(**{**DEMO_DEFAULTS, **overrides})
