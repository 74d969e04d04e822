"""Batched rollout engine vs. one dialogue at a time, same models, goals, turns, tokens, seeds.

The released MTSA research code generates with batch size 1, one dialogue after another.
`baseline` reproduces that with our engine (concurrency 1 and a model that generates one
conversation per call); `batched` keeps --concurrency dialogues live and batched together.
Both run in this process on the embedded model (attacker and target) with the embedded
judge, and the script prints dialogues/minute for both, the ratio last.

    python benchmarks/rollout_throughput.py --dialogues 32 --concurrency 16 --turns 2 --max-tokens 64

Both arms run in --dtype (default auto: what `mtsa` itself picks on this machine, see
`models/dtype.py`); the baseline, like the research code, without the prefix cache (the
batched engine computes the attacker's shared system prompt once; see `models/hf.py`): pass
--baseline-prefix-cache to measure batching alone. The first line printed names the CPU,
its bfloat16 support and any ISA caps in force (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA);
the dtypes used are printed before the results.

The untrained embedded model, even with `Thinking k:` pre-filled, still needs about two
draws per attacker turn, so the attacker's calls outweigh the target's. MTSA's attacker is
fine-tuned first (Stage 1); pass --attacker-adapter with a LoRA adapter from `mtsa sft` (or the demo,
or benchmarks/attacker_sft_effect.py) to measure that workload: the attacker is then the
embedded model with the adapter, the target the plain embedded model.
"""

from __future__ import annotations

import argparse
import time

from mtsa.goals.loaders import load_goals
from mtsa.judges.registry import load_judge
from mtsa.models.base import SamplingParams
from mtsa.models.dtype import chosen_dtypes, describe_machine
from mtsa.models.embedded import chat_model_dir
from mtsa.models.hf import HFChatModel
from mtsa.rollout.engine import Rollout, RolloutSettings, run_dialogues


def timed_run(attacker: HFChatModel, target: HFChatModel, judge, goals,
              settings: RolloutSettings) -> tuple[float, list]:
    finished: list = []
    start = time.perf_counter()
    run_dialogues([Rollout.of(g) for g in goals], attacker, target, judge, settings, finished.append)
    return time.perf_counter() - start, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=32, help="goals to red-team (from the built-in set)")
    parser.add_argument("--concurrency", type=int, default=16, help="dialogues live at once in the batched run")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64, help="attacker and target tokens per turn")
    parser.add_argument("--judge", default="embedded")
    parser.add_argument("--dtype", default="auto", help="both arms' dtype (auto: what mtsa picks here)")
    parser.add_argument("--baseline-prefix-cache", action="store_true", help="give the baseline the prefix cache too")
    parser.add_argument("--attacker-adapter", help="LoRA adapter folder for the attacker (an SFT'd attacker)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(describe_machine(), flush=True)

    goals = load_goals("builtin", limit=args.dialogues)
    judge = load_judge(args.judge)
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=args.max_tokens)
    settings = dict(turns=args.turns, attacker_sampling=sampling, target_sampling=sampling, seed=args.seed)

    def models(**options) -> tuple[HFChatModel, HFChatModel]:
        """(attacker, target) built with the same options; one shared model unless an adapter is given."""
        target = HFChatModel(str(chat_model_dir()), **options)
        if not args.attacker_adapter:
            return target, target
        return HFChatModel(str(chat_model_dir()), adapter=args.attacker_adapter, **options), target

    batched_s, batched = timed_run(*models(batch_size=args.concurrency, dtype=args.dtype), judge, goals,
                                   RolloutSettings(concurrency=args.concurrency, **settings))
    baseline_models = models(batch_size=1, dtype=args.dtype, prefix_cache=args.baseline_prefix_cache)
    baseline_s, baseline = timed_run(*baseline_models, judge, goals, RolloutSettings(concurrency=1, **settings))

    for model, choice in chosen_dtypes().items():
        print(f"dtype of {model}: {choice['dtype']} ({choice['reason']})")
    for label, seconds, finished in (("one-at-a-time", baseline_s, baseline), ("batched", batched_s, batched)):
        turns = sum(len(d.turns) for d in finished)
        tokens = sum(t.attacker_tokens + t.target_tokens for d in finished for t in d.turns)
        failures = sum(d.format_failure for d in finished)
        print(f"{label:>14}: {len(finished)} dialogues ({failures} format failures), {turns} turns, {tokens} tokens "
              f"in {seconds:.1f} s -> {60 * len(finished) / seconds:.2f} dialogues/min")
    print(f"ratio (batched / one-at-a-time): {baseline_s / batched_s:.2f}")


if __name__ == "__main__":
    main()
