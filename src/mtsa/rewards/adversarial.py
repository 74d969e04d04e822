"""R_adv: how good an attacker turn is, compared with the other candidates for the same state.

MTSA's attacker resampling redraws one attacker turn at several temperatures, rolls each
candidate out to the last turn, and scores it with

    R_adv = z(sum of P(unsafe) over turns h..H) + z(-max cosine similarity to the reference set)
            + z(-BLEU against the reference set),

z-scores taken over the candidates of the same state. The first term rewards attacks that
work (now or later in the dialogue); the other two reward attacks unlike the reference set
(the Stage 1 attacker's texts), so the attacker does not collapse onto a few known attacks.
Similarity uses the MiniLM encoder the project already ships; BLEU is sacrebleu's sentence
BLEU with every reference text as a reference, on a 0-1 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def zscores(values: Sequence[float]) -> np.ndarray:
    """Standard scores of `values`; all 0 when they do not vary (a term that cannot rank)."""
    array = np.asarray(values, dtype=np.float64)
    spread = array.std()
    return np.zeros_like(array) if spread < 1e-12 else (array - array.mean()) / spread


def adversarial_rewards(unsafe_sums: Sequence[float], similarities: Sequence[float],
                        bleus: Sequence[float]) -> list[float]:
    """R_adv of each candidate of one state, from its three raw terms."""
    total = zscores(unsafe_sums) + zscores([-s for s in similarities]) + zscores([-b for b in bleus])
    return [float(r) for r in total]


class ReferenceAttacks:
    """The reference attack set and the two measures of closeness to it.

    `max_similarity` is the highest cosine similarity of a text to any reference text; `bleu`
    is its sentence BLEU (0-1) against all of them. Both are high for an attack that repeats
    one the attacker already knows.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        from mtsa.models.embedded import sentence_embeddings

        self.texts = [t for t in texts if t.strip()]
        if not self.texts:
            raise ValueError("the reference attack set is empty")
        self.vectors = sentence_embeddings(self.texts)

    def max_similarity(self, texts: Sequence[str]) -> list[float]:
        from mtsa.models.embedded import sentence_embeddings

        return [float(s) for s in (sentence_embeddings(list(texts)) @ self.vectors.T).max(axis=1)]

    def bleu(self, texts: Sequence[str]) -> list[float]:
        from sacrebleu.metrics import BLEU

        metric = BLEU(effective_order=True)  # short texts: no zero score for a missing 4-gram
        return [metric.sentence_score(text, self.texts).score / 100.0 for text in texts]
