import json

import pytest
import torch

from mtsa.cli import main
from mtsa.models.base import SamplingParams
from mtsa.models.hf import HFChatModel
from mtsa.training.sft import AttackerSFTConfig, build_trainer

ROW = {"messages": [{"role": "system", "content": "SYSTEM GOAL"}, {"role": "user", "content": "start"},
                    {"role": "assistant", "content": "Thinking 1: a\nAttack question 1: b"},
                    {"role": "user", "content": "TARGET REPLY"},
                    {"role": "assistant", "content": "Thinking 2: c\nAttack question 2: d"}],
       "goal": "g", "strategy": "role_play", "success": True, "scores": [0.1, 0.9]}


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(ROW) + "\n" for _ in range(4)))
    return path


def test_trainer_labels_mask_everything_but_the_attacker_turns(data, tmp_path, tiny_model_dir):
    config = AttackerSFTConfig(data=str(data), model=f"hf:{tiny_model_dir}", out=str(tmp_path / "out"))
    trainer, _, _ = build_trainer(config)
    example = trainer.train_dataset[0]
    tokenizer = trainer.processing_class
    learned = tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != -100])
    assert "Attack question 1: b" in learned and "Attack question 2: d" in learned
    assert "SYSTEM GOAL" not in learned and "TARGET REPLY" not in learned


def test_a_short_run_has_no_warm_up_to_waste_its_first_step(data, tmp_path, tiny_model_dir):
    config = AttackerSFTConfig(data=str(data), model=f"hf:{tiny_model_dir}", out=str(tmp_path / "out"))
    trainer, _, _ = build_trainer(config)  # the default warm-up ratio, 0.1
    trainer.create_optimizer()
    assert trainer.create_scheduler(2).get_last_lr()[0] == pytest.approx(config.learning_rate)


def test_sft_cli_trains_a_lora_adapter_usable_as_an_attacker(data, tmp_path, tiny_model_dir):
    out = tmp_path / "adapter"
    assert main(["sft", "--data", str(data), "--model", f"hf:{tiny_model_dir}", "--out", str(out),
                 "--max-steps", "2", "--batch-size", "2", "--gradient-accumulation", "1"]) == 0
    assert (out / "adapter_config.json").is_file() and (out / "mtsa_sft.json").is_file()
    assert json.loads((out / "mtsa_sft.json").read_text())["steps"] == 2
    attacker = HFChatModel(str(tiny_model_dir), adapter=str(out))
    assert attacker.generate([ROW["messages"][:2]], SamplingParams(max_new_tokens=3, seed=0))[0].completion_tokens > 0


def test_the_terminal_shows_our_progress_and_results_not_library_noise(data, tmp_path, tiny_model_dir):
    """Run as a user would (a fresh process, so no test harness hides warnings)."""
    import subprocess
    import sys

    out = tmp_path / "adapter"
    command = [sys.executable, "-c", "import sys; from mtsa.cli import main; sys.exit(main())", "sft",
               "--data", str(data), "--model", f"hf:{tiny_model_dir}", "--out", str(out),
               "--max-steps", "1", "--batch-size", "2", "--gradient-accumulation", "1", "--gradient-checkpointing"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for noise in ("Warning", "pin_memory", "Truncating train dataset", "Dropping fully masked", "Map:"):
        assert noise not in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 1


@pytest.mark.parametrize("content, message", [
    ("", "no rows"),
    ("{not json\n", "malformed JSON on line 1"),
    (json.dumps({"text": "hi"}) + "\n", "no 'messages' list"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", "no assistant"),
    (json.dumps({"messages": [{"role": "assistant", "content": 5}]}) + "\n", "no 'messages' list"),
    (json.dumps({"messages": []}) + "\n", "no 'messages' list"),
])
def test_bad_data_is_a_one_line_error(tmp_path, tiny_model_dir, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    code = main(["sft", "--data", str(path), "--model", f"hf:{tiny_model_dir}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_missing_adapter_and_api_models_are_rejected(data, tmp_path, capsys):
    assert main(["sft", "--data", str(data), "--model", "openai:m@http://127.0.0.1:9/v1", "--out", str(tmp_path)]) == 2
    assert "local model" in capsys.readouterr().err
    assert main(["redteam", "--attacker", f"embedded+{tmp_path / 'nope'}", "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err


def test_lora_layers_adapts_only_the_top_layers_and_weights_follow_the_cpu(data, tmp_path, tiny_model_dir,
                                                                           monkeypatch):
    monkeypatch.delenv("MTSA_DTYPE", raising=False)
    monkeypatch.setattr("mtsa.models.dtype.cpu_bfloat16_support", lambda: ("AMX", "AMX"))
    config = AttackerSFTConfig(data=str(data), model=f"hf:{tiny_model_dir}", out=str(tmp_path / "out"), lora_layers=1)
    trainer, _, _ = build_trainer(config)
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in trainer.model.named_parameters()
               if "lora_" in name}
    num_layers = trainer.model.config.num_hidden_layers
    assert adapted == {str(num_layers - 1)}
    frozen = next(p for name, p in trainer.model.named_parameters() if "lora_" not in name)
    assert str(frozen.dtype) == "torch.bfloat16"
    assert all(p.dtype == torch.float32 for name, p in trainer.model.named_parameters() if "lora_" in name)

    monkeypatch.setattr("mtsa.models.dtype.cpu_bfloat16_support", lambda: (None, "AVX2 only"))
    trainer, _, _ = build_trainer(AttackerSFTConfig(data=str(data), model=f"hf:{tiny_model_dir}",
                                                    out=str(tmp_path / "out2")))
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert not trainer.args.bf16


def test_cpu_loss_scores_only_labelled_positions_and_equals_trls(data, tmp_path, tiny_model_dir):
    from trl import SFTTrainer

    trainer, _, _ = build_trainer(AttackerSFTConfig(data=str(data), model=f"hf:{tiny_model_dir}",
                                                    out=str(tmp_path / "out"), dtype="float32"))
    assert type(trainer) is not SFTTrainer  # on a CPU: the labelled-positions loss
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    model = trainer.model
    model.train()

    def loss_and_grads(compute):
        model.zero_grad()
        loss = compute(model, dict(batch))
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ours, our_grads = loss_and_grads(trainer.compute_loss)
    theirs, their_grads = loss_and_grads(lambda m, b: SFTTrainer.compute_loss(trainer, m, b))
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(our_grads, their_grads))
    assert ours > 0 and len(our_grads) > 0
