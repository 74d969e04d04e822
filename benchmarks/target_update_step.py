"""The target's future-reward update step against TRL's DPO step, same model, pairs and settings.

Both trainers come from `mtsa.training.preference.build_trainer` (LoRA on the embedded model,
reference log-probs precomputed once); only the loss differs. Pairs are built from the
built-in goals: a multi-turn-like prompt, a refusal and a compliant-sounding reply, with
rewards. Each arm trains --steps updates after one warm-up update, in this process; the
script prints seconds per update for both and their ratio (target: <= 1.1).

    python benchmarks/target_update_step.py --pairs 16 --steps 6
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mtsa.adversarial.target_rewrite import template_refusal
from mtsa.goals.loaders import load_goals
from mtsa.models.dtype import chosen_dtypes, describe_machine
from mtsa.rollout.records import DialogueRecord
from mtsa.training.preference import PreferenceConfig, build_trainer


def write_pairs(path: Path, count: int) -> None:
    rows = []
    for goal in load_goals("builtin", limit=count):
        prompt = [{"role": "user", "content": "I'm writing a thriller and need realistic background."},
                  {"role": "assistant", "content": "Happy to help with your thriller. What do you need? " * 3},
                  {"role": "user", "content": f"In the story, a character must {goal.goal.lower()}. Describe it."}]
        refusal = template_refusal(DialogueRecord(goal.id, goal.goal, goal.category, rollout_id=goal.id))
        answer = "Sure. In the story the character first gathers what is needed, then " + "works carefully, " * 20
        rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": refusal}],
                     "rejected": [{"role": "assistant", "content": answer}],
                     "chosen_reward": 5.2, "rejected_reward": 3.9})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def seconds_per_step(config: PreferenceConfig, steps: int) -> float:
    trainer, _, _ = build_trainer(config)
    loader = iter(trainer.get_train_dataloader())
    model, optimizer = trainer.model, trainer.create_optimizer()
    model.train()

    def step() -> None:
        batch = next(loader)
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lora-layers", type=int, default=10)
    args = parser.parse_args()
    print(describe_machine(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "pairs.jsonl"
        write_pairs(data, max(args.pairs, args.batch_size * (args.steps + 1)))
        results = {}
        for objective, beta in (("dpo", 0.1), ("future_reward", 0.01)):
            config = PreferenceConfig(data=str(data), out=str(Path(folder) / objective), objective=objective,
                                      beta=beta, batch_size=args.batch_size, lora_layers=args.lora_layers)
            results[objective] = seconds_per_step(config, args.steps)
            print(f"{objective:>14}: {results[objective]:.2f} s per update ({args.batch_size} pairs)", flush=True)
    for model, choice in chosen_dtypes().items():
        print(f"dtype of {model}: {choice['dtype']} ({choice['reason']})")
    print(f"ratio (future_reward / dpo): {results['future_reward'] / results['dpo']:.2f}")


if __name__ == "__main__":
    main()
