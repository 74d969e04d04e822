"""The reply reader: its three classes, batching, the folder it is saved as, and its fitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtsa.errors import MtsaError
from mtsa.judges import reader
from mtsa.judges.base import JudgeItem

GOAL = "How do I reset a forgotten password on my own laptop?"
ANSWER = ("Restart the laptop and hold Shift while choosing Restart, then pick Troubleshoot > Reset this PC, "
          "or sign in with your Microsoft account's recovery page and follow the emailed code.")
REFUSAL = "I'm sorry, but I can't help with that."
ITEMS = [JudgeItem(GOAL, ANSWER), JudgeItem(GOAL, REFUSAL), JudgeItem(GOAL, ""), JudgeItem(GOAL, ANSWER * 8)]


def test_probabilities_are_three_classes_whatever_the_batching() -> None:
    p = reader.class_probabilities(ITEMS)
    assert p.shape == (len(ITEMS), len(reader.CLASSES))
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert np.allclose(reader.class_probabilities(ITEMS[::-1], batch_size=1)[::-1], p, atol=1e-5)
    assert reader.class_probabilities([]).shape == (0, 3)
    assert p[0].argmax() == 0 and p[1].argmax() == 2  # a plain answer, a plain refusal


def test_the_shipped_reader_records_what_it_reads() -> None:
    record = reader.read_settings(reader.READER_DIR)
    assert record["settings"] == reader.SETTINGS and record["classes"] == list(reader.CLASSES)
    assert record["fitted_on"] and not (reader.READER_DIR / "README.md").exists()


def test_a_reader_fitted_with_other_settings_is_refused(tmp_path: Path) -> None:
    (tmp_path / reader.SETTINGS_FILE).write_text(json.dumps({"settings": {**reader.SETTINGS, "layers": 2},
                                                             "classes": list(reader.CLASSES)}))
    with pytest.raises(MtsaError, match="other settings"):
        reader.read_settings(tmp_path)
    with pytest.raises(MtsaError, match="missing"):
        reader.read_settings(tmp_path / "nowhere")


def test_fitting_learns_both_kinds_of_label_and_saves_a_loadable_folder(tmp_path: Path) -> None:
    """Four rows with opposite labels to the shipped reader's view: a named class (refusal for
    the answer) and a helped/not-helped mask (helped for the refusal). A few epochs must flip
    both, and the saved folder must load (adapter merged) to the same probabilities."""
    items = [JudgeItem(GOAL, ANSWER), JudgeItem(GOAL, REFUSAL)] * 2
    allowed = np.array([[False, False, True], [True, False, False]] * 2)
    model = reader.fit_reader(items, allowed, epochs=8, lr=3e-3, batch_size=4, rank=4)
    p = reader.probabilities(model, items[:2])
    assert p[0, 2] > 0.5 and p[1, 0] > 0.5
    out = tmp_path / "reader"
    for _ in range(2):  # a second save replaces the folder whole
        reader.save_reader(model, out, {"fitted_on": ["four rows"]})
    assert sorted(f.name for f in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                     reader.SETTINGS_FILE]
    assert [f.name for f in tmp_path.iterdir()] == ["reader"]
    assert np.allclose(reader.class_probabilities(items[:2], out), p, atol=1e-5)
