"""Keep the most diverse part of a synthesized attack set (MTSA Stage 1).

Each dialogue is represented by its attacker text (thoughts and questions), embedded with
MiniLM. Selection is greedy farthest-point (the project's choice where the paper is silent): start from the dialogue
least similar to the set's centroid, then repeatedly add the one whose highest cosine
similarity to anything already chosen is lowest. It is deterministic and O(n * k).
"""

from __future__ import annotations

import numpy as np

from mtsa.errors import MtsaError


def farthest_point(vectors: np.ndarray, k: int) -> list[int]:
    """Indices of k rows chosen greedily to minimise their maximum pairwise cosine similarity."""
    n = len(vectors)
    if not 1 <= k <= n:
        raise MtsaError(f"--top-k must be between 1 and the number of dialogues ({n}), got {k}")
    centroid = vectors.mean(axis=0)
    chosen = [int(np.argmin(vectors @ centroid))]
    closest = vectors @ vectors[chosen[0]]  # highest similarity of each row to the chosen set
    closest[chosen[0]] = np.inf
    while len(chosen) < k:
        pick = int(np.argmin(closest))
        chosen.append(pick)
        closest = np.maximum(closest, vectors @ vectors[pick])
        closest[chosen] = np.inf
    return chosen


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine similarity over distinct pairs (0.0 for fewer than two rows)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    similarity = vectors @ vectors.T
    return float((similarity.sum() - np.trace(similarity)) / (n * (n - 1)))
