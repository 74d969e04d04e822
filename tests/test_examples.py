"""The shipped example configs load: Stage 2 YAMLs into `mtsa train`'s config, accelerate
configs as YAML naming a launch mode (they are run only on GPUs, not here)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from mtsa.adversarial.loop import TrainConfig
from mtsa.config import build

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_stage2_examples_load_into_the_train_config() -> None:
    paper = build(TrainConfig, argparse.Namespace(), str(EXAMPLES / "stage2" / "paper-7b.yaml"))
    assert (paper.iterations, paper.turns, paper.target_objective) == (3, 5, "future_reward")
    assert "trust_remote_code=true" in paper.helpfulness  # ArmoRM's remote code, asked for explicitly
    launcher_config = paper.update_launcher.split("--config_file", 1)[1].split()[0]
    assert (EXAMPLES.parent / launcher_config).is_file()
    embedded = build(TrainConfig, argparse.Namespace(), str(EXAMPLES / "stage2" / "embedded.yaml"))
    assert embedded.iterations == 2 and embedded.target.startswith("embedded")


@pytest.mark.parametrize("name", ["ddp.yaml", "zero2.yaml", "zero3.yaml"])
def test_accelerate_configs_name_their_launch_mode(name: str) -> None:
    config = yaml.safe_load((EXAMPLES / "accelerate" / name).read_text())
    assert config["num_processes"] >= 1 and config["distributed_type"] in ("MULTI_GPU", "DEEPSPEED")
    if config["distributed_type"] == "DEEPSPEED":
        assert config["deepspeed_config"]["zero_stage"] == int(name[4])
