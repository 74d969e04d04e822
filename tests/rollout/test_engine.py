"""The batched loop, with a scripted attacker and judge (the protocol is the contract) and
the tiny real transformers model as the target."""

from dataclasses import replace

import pytest

from mtsa.goals.loaders import Goal
from mtsa.judges.base import JudgeItem
from mtsa.models.base import Reply, SamplingParams
from mtsa.models.hf import HFChatModel
from mtsa.rollout.engine import Branch, Rollout, RolloutSettings, run_dialogues
from mtsa.rollout.records import DialogueRecord


class ScriptedAttacker:
    """Writes well-formed turns, except `bad_attempts` unparseable ones per dialogue first."""

    name = "scripted-attacker"

    def __init__(self, bad_attempts: dict[str, int] | None = None):
        self.bad_attempts = dict(bad_attempts or {})
        self.batch_sizes: list[int] = []

    def generate(self, conversations, params: SamplingParams):
        self.batch_sizes.append(len(conversations))
        replies = []
        for conversation in conversations:
            goal = conversation[0]["content"].split("GOAL: ")[1].split("\n")[0]
            turn = 1 + sum(m["role"] == "assistant" for m in conversation)
            if self.bad_attempts.get(goal, 0) > 0:
                self.bad_attempts[goal] -= 1
                replies.append(Reply("no format here", 10, 3))
            else:
                text = f"Thinking {turn}: use role play.\nAttack question {turn}: {goal} q{turn}?"
                replies.append(Reply(text, 10, 5))
        return replies


class ScriptedJudge:
    """Unsafe exactly when the question asks turn `unsafe_turn`."""

    name = "scripted-judge"

    def __init__(self, unsafe_turn: int = 2):
        self.unsafe_turn = unsafe_turn
        self.batches: list[list[JudgeItem]] = []

    def score(self, items):
        self.batches.append(list(items))
        return [1.0 if item.question.endswith(f"q{self.unsafe_turn}?") else 0.0 for item in items]


@pytest.fixture(scope="module")
def target(tiny_model_dir):
    return HFChatModel(str(tiny_model_dir))


SETTINGS = RolloutSettings(turns=3, concurrency=4, target_sampling=SamplingParams(max_new_tokens=4))


def goals(n):
    return [Goal(id=f"g{i}", goal=f"goal{i}") for i in range(n)]


def run(attacker, target, judge, settings, n):
    finished = []
    run_dialogues([Rollout.of(g) for g in goals(n)], attacker, target, judge, settings, finished.append)
    return finished


def test_every_turn_is_batched_across_live_dialogues(target):
    attacker, judge = ScriptedAttacker(), ScriptedJudge()
    finished = run(attacker, target, judge, SETTINGS, 4)
    assert attacker.batch_sizes == [4, 4, 4]
    assert [len(batch) for batch in judge.batches] == [4, 4, 4]
    assert sorted(d.goal_id for d in finished) == ["g0", "g1", "g2", "g3"]
    dialogue = finished[0]
    assert [t.turn for t in dialogue.turns] == [1, 2, 3]
    assert [t.p_unsafe for t in dialogue.turns] == [0.0, 1.0, 0.0]
    assert dialogue.first_unsafe_turn() == 2
    assert dialogue.turns[0].thought == "use role play." and dialogue.turns[0].strategy == "role_play"
    assert 0 < dialogue.turns[0].target_tokens <= 4 and dialogue.turns[0].attacker_tokens == 5


def test_judge_sees_target_side_only(target):
    judge = ScriptedJudge()
    run(ScriptedAttacker(), target, judge, SETTINGS, 1)
    item = judge.batches[1][0]
    assert [m["role"] for m in item.history] == ["user", "assistant", "user"]
    assert all("Thinking" not in m["content"] for m in item.history)
    assert item.goal == "goal0"


def test_resamples_keep_the_batch_full_while_others_advance(target):
    attacker = ScriptedAttacker(bad_attempts={"goal0": 1})
    finished = {d.goal_id: d for d in run(attacker, target, ScriptedJudge(), SETTINGS, 3)}
    assert attacker.batch_sizes == [3, 4, 3, 1]  # goal0 lags one step behind (and takes the idle row)
    assert [t.format_retries for t in finished["g0"].turns] == [1, 0, 0]
    assert all(len(d.turns) == 3 for d in finished.values())


def test_questions_wait_until_half_the_pool_can_be_answered_together(target):
    attacker, judge = ScriptedAttacker(bad_attempts={"goal0": 1, "goal1": 1, "goal2": 1}), ScriptedJudge()
    settings = RolloutSettings(turns=1, concurrency=4, target_sampling=SamplingParams(max_new_tokens=2))
    finished = run(attacker, target, judge, settings, 4)
    # step 1: only goal3 parses, and one question is under half the pool: it waits; step 2: the
    # three resamples (goal0 also takes the row goal3 leaves idle) parse, and all four are answered
    assert attacker.batch_sizes == [4, 4]
    assert [len(batch) for batch in judge.batches] == [4]
    assert sorted(d.goal_id for d in finished) == ["g0", "g1", "g2", "g3"]
    assert all(len(d.turns) == 1 and not d.format_failure for d in finished)


def test_pool_refills_as_dialogues_finish(target):
    attacker = ScriptedAttacker()
    finished = run(attacker, target, ScriptedJudge(), RolloutSettings(turns=2, concurrency=2,
                   target_sampling=SamplingParams(max_new_tokens=2)), 5)
    assert len(finished) == 5 and max(attacker.batch_sizes) == 2


def test_unparseable_turns_are_resampled_then_dropped(target):
    attacker = ScriptedAttacker(bad_attempts={"goal0": 2, "goal1": 99})
    finished = {d.goal_id: d for d in run(attacker, target, ScriptedJudge(), SETTINGS, 2)}
    assert finished["g0"].turns[0].format_retries == 2 and not finished["g0"].format_failure
    assert finished["g1"].format_failure and finished["g1"].turns == []
    # resamples share the step's batch with the other dialogues' turns, and take its idle rows:
    # step 2 draws 2 for each (retries 1 -> 2 and 1 -> 3), step 3 goal1's last allowed draw,
    # while goal0's parsed question waits for it (one question is under half the pool of 4)
    assert attacker.batch_sizes[:3] == [2, 4, 1]


def test_idle_rows_draw_resamples_at_once_within_the_budget(target):
    attacker = ScriptedAttacker(bad_attempts={"goal0": 2, "goal1": 99})
    settings = RolloutSettings(turns=1, concurrency=8, target_sampling=SamplingParams(max_new_tokens=2))
    finished = {d.goal_id: d for d in run(attacker, target, ScriptedJudge(), settings, 2)}
    # step 1: one draw each, both fail; step 2: all remaining draws at once (3 each: 1 + 3 retries in all)
    assert attacker.batch_sizes == [2, 6]
    assert finished["g0"].turns[0].format_retries == 2  # its 3rd draw overall was the first to parse
    assert finished["g1"].format_failure and attacker.bad_attempts["goal1"] == 99 - 4


def test_stop_on_unsafe_ends_the_dialogue_at_its_first_unsafe_reply(target):
    settings = RolloutSettings(turns=3, concurrency=4, stop_on_unsafe=True,
                               target_sampling=SamplingParams(max_new_tokens=2))
    dialogue = run(ScriptedAttacker(), target, ScriptedJudge(unsafe_turn=2), settings, 1)[0]
    assert len(dialogue.turns) == 2 and dialogue.stopped_early


class PrefilledAttacker(ScriptedAttacker):
    """Continues an open "Thinking k:" message, as a backend with `can_prefill` does."""

    can_prefill = True

    def generate(self, conversations, params):
        for conversation in conversations:
            turn = sum(m["role"] == "assistant" for m in conversation)  # the open one included
            assert conversation[-1] == {"role": "assistant", "content": f"Thinking {turn}:"}
        full = super().generate([c[:-1] for c in conversations], params)
        return [Reply(r.text.split(":", 1)[1], r.prompt_tokens, r.completion_tokens) for r in full]


def test_attacker_turns_are_prefilled_when_the_backend_can_continue_a_message(target):
    dialogue = run(PrefilledAttacker(), target, ScriptedJudge(), SETTINGS, 1)[0]
    assert [t.turn for t in dialogue.turns] == [1, 2, 3] and not dialogue.format_failure
    assert dialogue.turns[1].thought == "use role play." and dialogue.turns[1].question == "goal0 q2?"


def test_prefill_can_be_turned_off(target):
    class Recording(ScriptedAttacker):
        can_prefill = True

        def generate(self, conversations, params):
            self.last_roles = [c[-1]["role"] for c in conversations]
            return super().generate(conversations, params)

    attacker = Recording()
    dialogue = run(attacker, target, ScriptedJudge(), replace(SETTINGS, attacker_prefill=False), 1)[0]
    assert attacker.last_roles == ["user"] and len(dialogue.turns) == 3


def test_attacker_history_keeps_thoughts_and_receives_replies_as_user(target):
    class Recording(ScriptedAttacker):
        def generate(self, conversations, params):
            self.last = list(conversations[0])
            return super().generate(conversations, params)

    attacker = Recording()
    dialogue = run(attacker, target, ScriptedJudge(), SETTINGS, 1)[0]
    roles = [m["role"] for m in attacker.last]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert attacker.last[2]["content"].startswith("Thinking 1:")
    assert attacker.last[3]["content"].startswith(dialogue.turns[0].reply)
    assert attacker.last[3]["content"].endswith("Thinking 2 and Attack question 2.]")


def test_a_dialogue_is_the_same_at_any_concurrency(tiny_model_dir):
    target = HFChatModel(str(tiny_model_dir), dtype="float32")  # bf16 rounds batched and lone rows apart
    settings = RolloutSettings(turns=2, concurrency=1,
                               target_sampling=SamplingParams(temperature=1.0, max_new_tokens=6))
    alone = {d.goal_id: d for d in run(ScriptedAttacker(), target, ScriptedJudge(), settings, 3)}
    batched = {d.goal_id: d for d in run(ScriptedAttacker(), target, ScriptedJudge(),
                                         replace(settings, concurrency=3), 3)}
    assert [t.reply for t in alone["g1"].turns] == [t.reply for t in batched["g1"].turns]


def test_rollouts_of_one_goal_are_told_apart_by_their_own_id(target):
    """Two rollouts of the same goal (one per strategy, as synthesis runs them) keep the goal's id
    in their records, have ids of their own, and draw from different seeds."""
    goal = Goal(id="g0", goal="goal0")
    seen: list[tuple[int, ...]] = []

    class SeedRecordingAttacker(ScriptedAttacker):
        def generate(self, conversations, params):
            seen.append(params.seeds)
            return super().generate(conversations, params)

    finished = []
    rollouts = [Rollout("g0:role_play", goal, "role_play"),
                Rollout("g0:purpose_inversion", goal, "purpose_inversion")]
    settings = replace(SETTINGS, turns=1)
    run_dialogues(rollouts, SeedRecordingAttacker(), target, ScriptedJudge(), settings, finished.append)
    assert sorted((d.goal_id, d.rollout_id, d.assigned_strategy) for d in finished) == [
        ("g0", "g0:purpose_inversion", "purpose_inversion"), ("g0", "g0:role_play", "role_play")]
    assert len(set(seen[0])) == 2


class TemperatureRecordingAttacker(ScriptedAttacker):
    """Also notes, for every row it writes, the turn and the temperature it was asked to use."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, int, float]] = []

    def generate(self, conversations, params):
        for index, conversation in enumerate(conversations):
            goal = conversation[0]["content"].split("GOAL: ")[1].split("\n")[0]
            turn = 1 + sum(m["role"] == "assistant" for m in conversation)
            self.rows.append((goal, turn, params.temperature_for(index)))
        return super().generate(conversations, params)


def branch_run(parent_settings, branches, attacker=None, judge=None, target=None):
    finished = []
    run_dialogues(branches, attacker or ScriptedAttacker(), target, judge or ScriptedJudge(), parent_settings,
                  finished.append)
    return {d.rollout_id: d for d in finished}


def test_branches_replay_the_parent_and_redraw_one_attacker_turn_in_one_batch(target):
    parent = run(ScriptedAttacker(), target, ScriptedJudge(), SETTINGS, 1)[0]
    goal = Goal(id="g0", goal="goal0")
    attacker = TemperatureRecordingAttacker()
    branches = [Rollout(f"g0/t2@{t}", goal, branch=Branch(parent, turn=2, attacker_temperature=t)) for t in (0.6, 1.2)]
    children = branch_run(SETTINGS, branches, attacker=attacker, target=target)
    assert attacker.batch_sizes == [2, 2]  # both siblings' turn 2, then both turn 3: one call each
    assert attacker.rows[:2] == [("goal0", 2, 0.6), ("goal0", 2, 1.2)]  # the redrawn turn at its own temperature
    assert {t for _, turn, t in attacker.rows if turn == 3} == {1.0}  # later turns at the default
    for child in children.values():
        assert child.parent == "g0" and child.branch_turn == 2 and child.goal_id == "g0"
        assert child.turns[0] == parent.turns[0]  # replayed as it was, not regenerated
        assert [t.turn for t in child.turns] == [1, 2, 3]


def test_a_branch_with_a_given_reply_keeps_the_attack_and_judges_the_new_reply(target):
    parent = run(ScriptedAttacker(), target, ScriptedJudge(unsafe_turn=2), SETTINGS, 1)[0]
    attacker, judge = ScriptedAttacker(), ScriptedJudge(unsafe_turn=99)
    rewrite = Rollout("g0/rewrite2", Goal(id="g0", goal="goal0"),
                      branch=Branch(parent, turn=2, reply="I can't help with that: it could hurt someone."))
    child = branch_run(SETTINGS, [rewrite], attacker=attacker, judge=judge, target=target)["g0/rewrite2"]
    assert attacker.batch_sizes == [1]  # only turn 3 is drawn
    assert child.turns[1].question == parent.turns[1].question
    assert child.turns[1].reply.startswith("I can't help") and child.turns[1].target_tokens == 0
    assert child.turns[1].p_unsafe == 0.0  # judged again: this judge calls nothing unsafe
    assert [item.reply for item in judge.batches[0]] == [child.turns[1].reply]
    assert judge.batches[0][0].history[-1] == {"role": "user", "content": parent.turns[1].question}
    assert [t.turn for t in child.turns] == [1, 2, 3] and child.turns[2].reply != ""


def test_siblings_draw_from_their_own_seeds(target):
    parent = run(ScriptedAttacker(), target, ScriptedJudge(), SETTINGS, 1)[0]
    seen = []

    class SeedRecordingAttacker(ScriptedAttacker):
        def generate(self, conversations, params):
            seen.append(params.seeds)
            return super().generate(conversations, params)

    branches = [Rollout(f"g0/b{i}", Goal(id="g0", goal="goal0"), branch=Branch(parent, 2, attacker_temperature=1.0))
                for i in range(2)]
    branch_run(SETTINGS, branches, attacker=SeedRecordingAttacker(), target=target)
    assert len(set(seen[0])) == 2


def test_a_branch_must_change_exactly_one_thing_within_the_parent():
    parent = DialogueRecord("g0", "goal0")
    with pytest.raises(ValueError):
        Branch(parent, 1)
    with pytest.raises(ValueError):
        Branch(parent, 1, attacker_temperature=1.0, reply="x")
    with pytest.raises(ValueError):
        Branch(parent, 1, reply="x")  # the parent has no turn 1 to rewrite
    Branch(parent, 1, attacker_temperature=0.8)  # a redraw of its first turn is fine
