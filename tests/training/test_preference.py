"""Preference updates on the tiny model: the future-reward loss against a hand computation, a
step that moves the margin towards its target, DPO end to end, one-line errors."""

import json
import socket
import subprocess
import sys

import pytest
import torch

from mtsa.errors import MtsaError
from mtsa.training.preference import PreferenceConfig, build_trainer, run_preference


def write_pairs(path, rewards=((2.0, 0.0), (1.0, 0.5))):
    rows = []
    for n, (chosen_reward, rejected_reward) in enumerate(rewards):
        rows.append({"prompt": [{"role": "user", "content": f"How do I do thing {n}?"}],
                     "chosen": [{"role": "assistant", "content": "I can't help with that, it is risky."}],
                     "rejected": [{"role": "assistant", "content": f"Sure, step one of thing {n} is easy."}],
                     "chosen_reward": chosen_reward, "rejected_reward": rejected_reward, "provenance": {"n": n}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def config(tiny_model_dir, tmp_path, **overrides):
    settings = dict(data=write_pairs(tmp_path / "pairs.jsonl"), model=f"hf:{tiny_model_dir}",
                    out=str(tmp_path / "out"),
                    objective="future_reward", beta=0.01, batch_size=2, max_steps=1, logging_steps=1,
                    learning_rate=1e-3, warmup_ratio=0.0)
    return PreferenceConfig(**{**settings, **overrides})


def hand_logps(model, example) -> float:
    """log p(completion | prompt), by a plain forward over the whole sequence."""
    prompt, completion = example["prompt_ids"], example["chosen_ids"]
    ids = torch.tensor([prompt + completion])
    logps = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    return sum(logps[len(prompt) - 1 + i, token].item() for i, token in enumerate(completion))


def rejected_view(example):
    return {**example, "chosen_ids": example["rejected_ids"]}


def test_future_reward_loss_equals_the_hand_computed_value(tiny_model_dir, tmp_path):
    trainer, _, _ = build_trainer(config(tiny_model_dir, tmp_path))
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy away from its reference (a new LoRA starts as the identity)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    examples = [trainer.train_dataset[i] for i in range(2)]
    expected = []
    with torch.no_grad():
        for example in examples:
            policy = hand_logps(model, example) - hand_logps(model, rejected_view(example))
            with model.disable_adapter():
                reference = hand_logps(model, example) - hand_logps(model, rejected_view(example))
            assert example["ref_chosen_logps"] - example["ref_rejected_logps"] == pytest.approx(reference, abs=1e-3)
            eta = 1 / (2 * 0.01)
            expected.append((policy - reference - eta * example["reward_margin"]) ** 2)
    batch = trainer.data_collator(examples)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
    assert loss == pytest.approx(sum(expected) / 2, rel=1e-3)


def test_one_step_moves_the_margin_towards_its_target(tiny_model_dir, tmp_path):
    one_pair = write_pairs(tmp_path / "one.jsonl", [(0.5, 0.0)])
    trainer, _, _ = build_trainer(config(tiny_model_dir, tmp_path, data=one_pair, batch_size=1,
                                         beta=0.25))  # eta 2: a target of 1 nat
    example = trainer.train_dataset[0]
    trainer.train()
    with torch.no_grad():
        margin = (hand_logps(trainer.model, example) - example["ref_chosen_logps"]) - (
            hand_logps(trainer.model, rejected_view(example)) - example["ref_rejected_logps"])
    assert 0.0 < margin  # it started at 0, the target is +1
    [(achieved, asked)] = trainer.achieved_margins()  # what the summary's margin distribution is made of
    assert (achieved, asked) == (pytest.approx(margin, abs=1e-3), pytest.approx(1.0))
    logged = [entry for entry in trainer.state.log_history if "future_reward/target" in entry]
    assert logged and logged[0]["future_reward/target"] == pytest.approx(1.0)


def test_a_one_step_update_learns_with_the_default_warm_up(tiny_model_dir, tmp_path):
    # transformers rounds a warm-up ratio up and warms up from a learning rate of 0: the one step
    # of a short update (a Stage 2 iteration with a few pairs) would leave the model unchanged
    trainer, _, _ = build_trainer(config(tiny_model_dir, tmp_path, warmup_ratio=0.1))
    trainer.train()
    assert trainer.state.log_history[0]["learning_rate"] > 0
    assert any(p.abs().max() > 0 for name, p in trainer.model.named_parameters() if "lora_B" in name)


@pytest.mark.parametrize("steps, warmup", [(9, 0), (20, 2)])
def test_the_warm_up_ratio_rounds_down_to_whole_steps(tiny_model_dir, tmp_path, steps, warmup):
    trainer, _, _ = build_trainer(config(tiny_model_dir, tmp_path, warmup_ratio=0.1))
    trainer.create_optimizer()
    first_lr = trainer.create_scheduler(steps).get_last_lr()[0]
    assert trainer.args.get_warmup_steps(steps) == warmup
    assert (first_lr > 0) == (warmup == 0)


def test_dpo_trains_saves_and_an_adapter_can_be_trained_further(tiny_model_dir, tmp_path):
    first = run_preference(config(tiny_model_dir, tmp_path, objective="dpo", beta=0.1))
    assert (tmp_path / "out" / "adapter_config.json").is_file() and first["steps"] == 1 and first["pairs"] == 2
    again = run_preference(config(tiny_model_dir, tmp_path, objective="future_reward", adapter=str(tmp_path / "out"),
                                  out=str(tmp_path / "out2")))
    assert (tmp_path / "out2" / "adapter_config.json").is_file() and again["steps"] == 1
    assert "margins" not in first  # DPO has no target margin
    margins = again["margins"]  # each pair's margin after training against its target eta * dR
    assert margins["pairs"] == 2  # rewards 2 - 0 and 1 - 0.5 at eta 50: 100 and 25 nats asked
    assert (margins["target"]["min"], margins["target"]["max"]) == (pytest.approx(25.0), pytest.approx(100.0))
    assert 0.0 <= margins["same_sign"] <= 1.0 and margins["mean_abs_error"] >= 0.0


def test_beta_defaults_to_what_mtsa_train_uses_for_each_objective(tiny_model_dir, tmp_path):
    assert config(tiny_model_dir, tmp_path, beta=None).beta == 0.01  # future reward: eta 50
    assert config(tiny_model_dir, tmp_path, beta=None, objective="dpo").beta == 0.1


def test_bad_input_is_a_one_line_error(tiny_model_dir, tmp_path):
    missing = tmp_path / "no_rewards.jsonl"
    missing.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}],
                                   "chosen": [{"role": "assistant", "content": "a"}],
                                   "rejected": [{"role": "assistant", "content": "b"}]}) + "\n")
    with pytest.raises(MtsaError, match="chosen_reward"):
        build_trainer(config(tiny_model_dir, tmp_path, data=str(missing)))
    with pytest.raises(MtsaError, match="only local weights"):
        config(tiny_model_dir, tmp_path, model="openai:gpt-4o@http://localhost:1")
    with pytest.raises(MtsaError, match="objective"):
        config(tiny_model_dir, tmp_path, objective="ppo")
    with pytest.raises(MtsaError, match="adapter"):
        config(tiny_model_dir, tmp_path, adapter=str(tmp_path / "nowhere"))
    with pytest.raises(MtsaError, match="warmup-ratio"):  # transformers would read 1 as one step
        config(tiny_model_dir, tmp_path, warmup_ratio=1.0)
    for setting, message in [({"lora_r": 0}, "--lora-r"), ({"lora_dropout": 2.0}, "--lora-dropout"),
                             ({"gradient_accumulation": 0}, "--gradient-accumulation"),
                             ({"lr_scheduler": "foo"}, "--lr-scheduler must be one of"),
                             ({"max_length": 0}, "--max-length"), ({"max_steps": 0}, "--max-steps")]:
        with pytest.raises(MtsaError, match=message):
            config(tiny_model_dir, tmp_path, **setting)


def test_pairs_a_chat_template_or_the_loss_cannot_take_are_one_line_errors(tiny_model_dir, tmp_path):
    chat = [{"role": "user", "content": "hi"}]
    answer = [{"role": "assistant", "content": "hello"}]
    bad_rows = {"nan_reward": {"prompt": chat, "chosen": answer, "rejected": answer, "chosen_reward": "nan",
                               "rejected_reward": 0.0},
                "number_content": {"prompt": [{"role": "user", "content": 5}], "chosen": answer, "rejected": answer,
                                   "chosen_reward": 1.0, "rejected_reward": 0.0},
                "string_message": {"prompt": ["hi"], "chosen": answer, "rejected": answer, "chosen_reward": 1.0,
                                   "rejected_reward": 0.0}}
    for name, row in bad_rows.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(MtsaError, match="row 1 needs"):
            build_trainer(config(tiny_model_dir, tmp_path, data=str(path), objective="future_reward"))
    with pytest.raises(MtsaError, match="no module named nope"):
        build_trainer(config(tiny_model_dir, tmp_path, lora_target_modules="q_proj,nope"))
    (tmp_path / "a_file").write_text("keep")
    with pytest.raises(MtsaError, match="exists and is not a folder"):
        run_preference(config(tiny_model_dir, tmp_path, out=str(tmp_path / "a_file")))


def test_long_prompts_lose_their_oldest_turns_not_the_pair(tiny_model_dir):
    from transformers import AutoTokenizer

    from mtsa.training.preference import fit_pairs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    history = [{"role": "system", "content": "be safe"}]
    for n in range(6):
        history += [{"role": "user", "content": f"question {n} " * 20}, {"role": "assistant", "content": "ok " * 20}]
    row = {"prompt": history + [{"role": "user", "content": "latest question"}],
           "chosen": [{"role": "assistant", "content": "no"}], "rejected": [{"role": "assistant", "content": "yes"}]}
    (fitted,), shortened = fit_pairs([row], tokenizer, max_length=200)
    assert shortened == 1 and fitted["prompt"][0] == history[0]
    assert fitted["prompt"][-1]["content"] == "latest question"
    assert len(fitted["prompt"]) < len(row["prompt"])
    assert fit_pairs([row], tokenizer, max_length=5000) == ([row], 0)
    with pytest.raises(MtsaError, match="max-length"):
        fit_pairs([row], tokenizer, max_length=10)


def test_a_continued_update_takes_the_adapter_as_it_stood_for_its_reference(tiny_model_dir, tmp_path):
    """Iteration t+1's reference is the model at the start of its update (the adapter iteration t
    trained), not the base model: its precomputed log-probs are the adapted model's."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_preference(config(tiny_model_dir, tmp_path, objective="dpo", beta=0.1, learning_rate=5e-2, max_steps=3))
    trainer, _, _ = build_trainer(config(tiny_model_dir, tmp_path, adapter=str(tmp_path / "out"),
                                         out=str(tmp_path / "out2")))
    example = trainer.train_dataset[0]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        from_base = hand_logps(base, example)
        adapted = hand_logps(PeftModel.from_pretrained(base, str(tmp_path / "out")).eval(), example)
    assert abs(adapted - from_base) > 0.05  # the first update moved the model
    assert example["ref_chosen_logps"] == pytest.approx(adapted, abs=1e-3)


def test_an_update_runs_data_parallel(tiny_model_dir, tmp_path):
    # Two CPU processes (torchrun, gloo), as `mtsa train --update-launcher "accelerate launch ..."`
    # runs an update on GPUs: every rank must find the reference log-probs that rank 0 computed.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "mtsa.cli", "preference",
               "--data", write_pairs(tmp_path / "pairs.jsonl"), "--model", f"hf:{tiny_model_dir}",
               "--out", str(out), "--objective", "future_reward", "--beta", "0.01", "--batch-size", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "mtsa_preference.json").read_text())
    assert summary["steps"] == 1  # one pair per process per step: the two shared the work
    assert summary["pairs"] == 2 and summary["margins"]["pairs"] == 2  # both pairs' margins gathered
    assert (out / "adapter_config.json").is_file() and not (out / "pairs_dataset").exists()
