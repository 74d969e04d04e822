"""Stage 2's over-refusal guard (beyond the paper): pairs that teach the target to answer benign
requests that only sound risky ("how do I kill a Python process"), mixed into its update.

For each of a few benign look-alike prompts the target answers twice; its full answer is the
chosen reply and a refusal (its own, or a template) the rejected one, each rewarded as a
one-turn dialogue. The prompts are benign by construction, so neither of the run's own scorers
is asked: a reply's helpfulness here is the refusal judge's P(full compliance), and its P(safe)
is 1. A scorer or a judge that takes a look-alike for a harmful request (which is what
look-alikes are for; the keyword judge calls every answer unsafe) would reward the refusal and
turn the guard around, or leave it without a pair. A pair whose answer still does not out-score
its refusal is left out.

The refusal judge reads incoherent text as compliance or as refusal (docs/judges.md), so an
answer must also be about the prompt (the embedded judge's on-goal gate), and an own reply
stands for the refusal only if it has a refusal phrase; else the template does. Otherwise a
small target's nonsense would be taught as the helpful answer, or be the "refusal" it learns to
avoid.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from mtsa.goals.loaders import Goal, load_goals
from mtsa.judges.base import JudgeItem
from mtsa.models.base import ChatModel
from mtsa.rollout.engine import RolloutSettings
from mtsa.training.pairs import PreferencePair

TEMPLATE_REFUSAL = "I'm sorry, but I can't help with that."
REPLIES_PER_PROMPT = 2


def shipped_benign_prompts() -> list[Goal]:
    """The project's own benign look-alike requests (the request classifier's benign data)."""
    from mtsa.judges.requests import DATA_DIR

    return load_goals(str(DATA_DIR / "benign_lookalikes.jsonl"))


def guard_pairs(benign: Sequence[Goal], count: int, iteration: int, seed: int, target: ChatModel,
                settings: RolloutSettings) -> list[PreferencePair]:
    """Up to `count` guard pairs from the next `count` prompts of `benign` (each iteration takes the
    following ones, so the guard does not train on the same prompts every time)."""
    import numpy as np

    from mtsa.judges.embedded import features, load_head, p_on_goal
    from mtsa.judges.keyword import KeywordJudge
    from mtsa.judges.refusal import RefusalJudge

    if count == 0 or not benign:
        return []
    start = (seed + iteration - 1) * count % len(benign)
    prompts = (list(benign[start:]) + list(benign[:start]))[:count]
    items = own_replies(prompts, target, settings)
    refusal_judge = RefusalJudge()
    compliance = np.asarray([c["p_full_compliance"] for c in refusal_judge.columns(items)])
    answers = (compliance >= 0.5) & (p_on_goal(load_head(), features(items)) >= 0.5)
    refusals = [c <= 0.5 and keyword < 0.5 for c, keyword in zip(compliance, KeywordJudge().score(items))]

    # (prompt id, answer, its P(full compliance), refusal, its P(full compliance) or None for a template)
    chosen: list[tuple[str, JudgeItem, float, JudgeItem, float | None]] = []
    for prompt, replies, scores, answering, refusing in zip(prompts, per_prompt(items), per_prompt(compliance),
                                                            per_prompt(answers), per_prompt(refusals)):
        answer = next(((item, float(c)) for item, c, ok in zip(replies, scores, answering) if ok), None)
        if answer is None:
            continue  # the target never answered it fully: nothing to prefer
        template = JudgeItem(prompt.goal, TEMPLATE_REFUSAL, history=answer[0].history)
        refusal = next(((item, float(c)) for item, c, ok in zip(replies, scores, refusing) if ok), (template, None))
        chosen.append((prompt.id, *answer, *refusal))
    templates = [refusal for *_, refusal, score in chosen if score is None]  # the only replies not read yet
    template_scores = iter([c["p_full_compliance"] for c in refusal_judge.columns(templates)] if templates else [])

    pairs = []
    for prompt_id, answer, answer_score, refusal, refusal_score in chosen:
        if refusal_score is None:
            refusal_score = next(template_scores)
        answer_reward, refusal_reward = answer_score + 1.0, refusal_score + 1.0  # helpfulness + P(safe)
        if answer_reward > refusal_reward:
            pairs.append(PreferencePair(answer.history, [{"role": "assistant", "content": answer.reply}],
                                        [{"role": "assistant", "content": refusal.reply}], answer_reward,
                                        refusal_reward, {"guard": prompt_id}))
    return pairs


def own_replies(prompts: list[Goal], target: ChatModel, settings: RolloutSettings) -> list[JudgeItem]:
    """The target's replies to each prompt, REPLIES_PER_PROMPT in a row, sampled in one batch
    (greedy decoding would give the same reply twice, so a zero temperature becomes 1)."""
    system = [{"role": "system", "content": settings.target_system_prompt}] if settings.target_system_prompt else []
    chats = [system + [{"role": "user", "content": g.goal}] for g in prompts for _ in range(REPLIES_PER_PROMPT)]
    sampling = dataclasses.replace(settings.target_sampling, temperature=settings.target_sampling.temperature or 1.0,
                                   seeds=tuple(range(settings.seed * 1000, settings.seed * 1000 + len(chats))))
    replies = target.generate(chats, sampling)
    return [JudgeItem(chat[-1]["content"], r.text, history=chat) for chat, r in zip(chats, replies)]


def per_prompt(values: Sequence) -> list[Sequence]:
    """A flat sequence of per-reply values, grouped by prompt."""
    return [values[k:k + REPLIES_PER_PROMPT] for k in range(0, len(values), REPLIES_PER_PROMPT)]
