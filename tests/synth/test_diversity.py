import numpy as np
import pytest

from mtsa.errors import MtsaError
from mtsa.models.embedded import sentence_embeddings
from mtsa.synth.diversity import farthest_point, mean_pairwise_cosine


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_farthest_point_skips_near_duplicates():
    vectors = unit([[1, 0, 0], [0.99, 0.05, 0], [0, 1, 0], [0, 0.02, 1], [0.98, 0, 0.1]])
    chosen = farthest_point(vectors, 3)
    assert len(set(chosen)) == 3
    # one from the cluster around x, plus y and z
    assert sum(i in (0, 1, 4) for i in chosen) == 1 and 2 in chosen and 3 in chosen
    assert mean_pairwise_cosine(vectors[chosen]) < mean_pairwise_cosine(vectors)


def test_top_k_out_of_range_is_a_user_error():
    with pytest.raises(MtsaError, match="--top-k"):
        farthest_point(unit([[1, 0], [0, 1]]), 3)


def test_selection_on_real_embeddings_lowers_similarity():
    texts = ["How do banks detect fraud?", "How do banks spot fraud?", "How do banks notice fraud?",
             "Write a story about a locksmith.", "What chemicals are in household cleaners?"]
    vectors = sentence_embeddings(texts)
    chosen = farthest_point(vectors, 3)
    assert sum(i < 3 for i in chosen) == 1  # only one of the three paraphrases survives
    assert mean_pairwise_cosine(vectors[chosen]) < mean_pairwise_cosine(vectors)
