"""One Stage 2 iteration end to end on the tiny model, with a scripted attacker and judge (so that
dialogues succeed and candidates differ), real TRL updates in their own processes, and resume."""

import json
import sys
from pathlib import Path

import pytest

from mtsa.adversarial import loop
from mtsa.adversarial.loop import TrainConfig, run_train, with_adapter_spec
from mtsa.errors import MtsaError
from mtsa.models.base import Reply
from mtsa.models.generation_server import adapter_name
from mtsa.models.hf import HFChatModel
from mtsa.training.export import export


class VaryingAttacker:
    """Well-formed turns whose question names the turn and the temperature it was drawn at."""

    name = "scripted-attacker"

    def generate(self, conversations, params):
        replies = []
        for index, conversation in enumerate(conversations):
            goal = conversation[0]["content"].split("GOAL: ")[1].split("\n")[0]
            turn = 1 + sum(m["role"] == "assistant" for m in conversation)
            question = f"{goal} q{turn} at {params.temperature_for(index)}?"
            replies.append(Reply(f"Thinking {turn}: use role play.\nAttack question {turn}: {question}", 10, 5))
        return replies


class TurnJudge:
    """Turn 2 is unsafe; turn 1 is unsafe in proportion to the temperature its question was drawn at."""

    name = "scripted-judge"

    def score(self, items):
        scores = []
        for item in items:
            question = item.question
            at = question.rsplit(" at ", 1)
            scores.append(1.0 if " q2 " in question else float(at[1].rstrip("?")) / 4 if len(at) == 2 else 0.0)
        return scores


@pytest.fixture
def scripted_models(tiny_model_dir, monkeypatch):
    target = HFChatModel(str(tiny_model_dir))

    def load_models(config, attacker, target_spec):
        return {"attacker": VaryingAttacker(), "target": target, "judge": TurnJudge()}

    monkeypatch.setattr(loop, "load_models", load_models)


def config(tiny_model_dir, tmp_path, **overrides):
    goals = tmp_path / "goals.jsonl"
    goals.write_text("".join(json.dumps({"goal": f"goal{i}", "category": "weapons"}) + "\n" for i in range(2)))
    settings = dict(attacker=f"hf:{tiny_model_dir}", target=f"hf:{tiny_model_dir}", judge="keyword",
                    goals=str(goals), turns=3, iterations=1, out=str(tmp_path / "run"), target_max_tokens=8,
                    attacker_max_tokens=16, benign_ratio=1.0, train_batch_size=1, max_length=1024)
    return TrainConfig(**{**settings, **overrides})


def test_one_iteration_writes_pairs_updates_both_models_and_resumes(tiny_model_dir, tmp_path, scripted_models,
                                                                    monkeypatch):
    metrics = run_train(config(tiny_model_dir, tmp_path))
    folder = tmp_path / "run" / "iter_1"
    attacker_pairs = [json.loads(line) for line in (folder / "attacker_pairs.jsonl").read_text().splitlines()]
    target_pairs = [json.loads(line) for line in (folder / "target_pairs.jsonl").read_text().splitlines()]
    assert len(attacker_pairs) == 2  # one state per goal: turn 1, redrawn at four temperatures
    assert attacker_pairs[0]["chosen"][0]["content"].startswith("Thinking 1:")
    assert "at 1.2?" in attacker_pairs[0]["chosen"][0]["content"]  # the most unsafe candidate
    assert "at 1.0?" in attacker_pairs[0]["rejected"][0]["content"]  # the parent's own attack again: no diversity
    rewrites = [p for p in target_pairs if "rewrite_source" in p["provenance"]]
    assert len(rewrites) == 2 and all(p["prompt"][-1]["content"].endswith("q2 at 1.0?") for p in rewrites)
    assert metrics["rewrite_sources"]["template"] == 2  # this judge finds every reply to q2 unsafe
    assert all((folder / model / "adapter_config.json").is_file() for model in ("attacker", "target"))
    assert metrics["attacker_out"] == with_adapter_spec(f"hf:{tiny_model_dir}", folder / "attacker")
    assert metrics["attacker_update"]["steps"] >= 1 and metrics["target_update"]["pairs"] == len(target_pairs)
    for name in ("attacker_update", "target_update"):  # every step logged, however short the update
        assert len(metrics[name]["log"]) == metrics[name]["steps"]
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["attacker_sampling_asr"] == 1.0 and saved["target_pairs"] == 2
    assert saved["attacker_reward_chosen"] > saved["attacker_reward_rejected"]

    evaluation = tmp_path / "eval"  # a red-team run of the new target, on other goals
    evaluation.mkdir()
    (evaluation / "summary.json").write_text(json.dumps({
        "asr": 0.25, "threshold": 0.5, "judge": "keyword", "n_dialogues": 8, "format_failures": 1,
        "goals": "held_out.jsonl", "attacker": "embedded", "target": metrics["target_out"]}))
    refusals = tmp_path / "over-refusal"  # an over-refusal run of it
    refusals.mkdir()
    (refusals / "summary.json").write_text(json.dumps({
        "over_refusal": 0.12, "over_refusal_keyword": 0.04, "threshold": 0.5, "judge": "refusal", "n_prompts": 50,
        "prompts": "xstest_prompts.csv", "label": "safe", "target": metrics["target_out"]}))
    exported = export(str(folder / "target"), str(tmp_path / "exported"), [str(evaluation), str(refusals)])
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(exported)  # plain transformers: no peft, no mtsa
    assert merged.config.num_hidden_layers == 2 and not (exported / "adapter_config.json").exists()
    card = (exported / "README.md").read_text()
    assert "future_reward" in card and "target sampling" in card and "Future-reward margins" in card
    assert "ASR **25.0%**" in card and "judge `keyword`" in card and "goals `held_out.jsonl`" in card
    assert "**12.0%** refused" in card and "50 prompts of `xstest_prompts.csv` labelled `safe`" in card
    with pytest.raises(MtsaError, match="not the checkpoint"):  # a run of another model is not this one's
        export(str(folder / "attacker"), str(tmp_path / "exported_attacker"), [str(evaluation)])

    # an update killed half-way leaves a folder without its summary: a resume trains it again
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_text("torn")
    config_again = config(tiny_model_dir, tmp_path, resume=True)
    redone = loop.update(config_again, folder / "target_pairs.jsonl", f"hf:{tiny_model_dir}", partial,
                         "future_reward", 0.01, 1e-3, 12)
    assert redone["steps"] >= 1 and (partial / "mtsa_preference.json").is_file()
    # one that finished but whose phase was not recorded (killed just after) is kept, not redone
    kept = loop.update(config_again, folder / "target_pairs.jsonl", "hf:not-loaded", partial, "future_reward",
                       0.01, 1e-3, 12)
    assert kept == redone
    # one killed while saving, resumed with no pairs to train on: removed, never taken for a checkpoint
    (partial / "mtsa_preference.json").unlink()
    (tmp_path / "no_pairs.jsonl").write_text("")
    skipped = loop.update(config_again, tmp_path / "no_pairs.jsonl", "hf:not-loaded", partial, "future_reward",
                          0.01, 1e-3, 12)
    assert skipped == {"skipped": "no pairs"} and not partial.exists() and not loop.finished_update(partial)

    def no_update(*args, **kwargs):
        raise AssertionError("a finished phase ran again")

    monkeypatch.setattr(loop, "update", no_update)
    again = run_train(config(tiny_model_dir, tmp_path, resume=True))
    assert again["target_out"] == metrics["target_out"]

    # killed during the target's update: the pairs were recorded, so a resume runs the update
    # alone, without loading a model or scoring anything again
    recorded = json.loads((folder / "metrics.json").read_text())
    del recorded["target_update"]
    (folder / "metrics.json").write_text(json.dumps(recorded))
    updated = []
    monkeypatch.setattr(loop, "load_models", lambda *args: pytest.fail("models loaded again"))
    monkeypatch.setattr(loop, "update", lambda config, pairs, *rest: updated.append(pairs.name) or {"steps": 1})
    run_train(config(tiny_model_dir, tmp_path, resume=True))
    assert updated == ["target_pairs.jsonl"]
    assert "resumed" not in recorded and json.loads((folder / "metrics.json").read_text())["resumed"] is True


def test_an_iteration_without_successes_makes_no_pairs_and_keeps_the_models(tiny_model_dir, tmp_path, monkeypatch,
                                                                           capsys):
    target = HFChatModel(str(tiny_model_dir))

    class SafeJudge(TurnJudge):
        def score(self, items):
            return [0.0] * len(items)

    monkeypatch.setattr(loop, "load_models", lambda *a: {"attacker": VaryingAttacker(), "target": target,
                                                        "judge": SafeJudge()})
    metrics = run_train(config(tiny_model_dir, tmp_path, benign_ratio=0.0))
    assert metrics["attacker_pairs"] == 0 and metrics["target_pairs"] == 0
    assert metrics["attacker_update"] == {"skipped": "no pairs"}
    assert metrics["attacker_out"] == f"hf:{tiny_model_dir}" and metrics["target_out"] == f"hf:{tiny_model_dir}"
    said = capsys.readouterr().out
    assert "iter_1/attacker_sampling: no successful attack in 2 dialogues" in said
    assert "iter_1/target_sampling: no successful attack" in said


def test_release_gives_a_gpus_cached_memory_back_before_an_update(monkeypatch):
    from types import SimpleNamespace

    from mtsa.adversarial.loop import release

    emptied = []
    cuda = SimpleNamespace(is_available=lambda: True, empty_cache=lambda: emptied.append(True))
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    models = {"target": object(), "helpfulness": object()}
    release(models)
    assert models == {} and emptied == [True]


def test_with_adapter_spec_replaces_the_adapter_and_keeps_options():
    assert with_adapter_spec("embedded", "runs/a") == "embedded+runs/a"
    assert with_adapter_spec("hf:base+old?device=cpu", "new") == "hf:base+new?device=cpu"


@pytest.mark.parametrize("overrides, message", [
    ({"attacker": "openai:gpt-4o@http://localhost:1"}, "API model"),
    ({"target": "hf:org/base+owner/adapter"}, "adapter must be a local folder"),
    ({"iterations": 0}, "iterations"),
    ({"target_objective": "ppo"}, "target-objective"),
    ({"attacker_temperatures": "hot"}, "attacker-temperatures"),
    ({"attacker_temperatures": "1.0,1.0000001"}, "differ in their first 6 digits"),  # one branch id, twice
    ({"stop_on_unsafe": True}, "plays every dialogue to its last turn"),
    ({"judge": "refusal"}, "needs a harm judge"),
])
def test_bad_settings_are_one_line_errors(tiny_model_dir, tmp_path, overrides, message):
    with pytest.raises(MtsaError, match=message):
        run_train(config(tiny_model_dir, tmp_path, **overrides))


def test_rollouts_go_through_a_generation_server_that_loads_each_new_checkpoint(tiny_model_dir, tmp_path):
    """Two iterations with both models' rollouts on a (fake) vLLM server holding their base model:
    the attacker and target start on the base, and iteration 2 samples from the target adapter
    that iteration 1 trained here, loaded into the server by name; the updates train locally."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from fake_openai_server import FakeOpenAIServer, attacker_reply

    def reply(messages):
        return attacker_reply(messages) if "GOAL: " in messages[0]["content"] else "Sure, here is how."

    with FakeOpenAIServer(model_id=str(tiny_model_dir), lora=True, reply_fn=reply) as fake:
        metrics = run_train(config(tiny_model_dir, tmp_path, judge="keyword", iterations=2, turns=2,
                                   generation_server=fake.base_url))
        served = {r.body["model"] for r in fake.completions}
    first_target = tmp_path / "run" / "iter_1" / "target"
    assert metrics["target_in"] == with_adapter_spec(f"hf:{tiny_model_dir}", first_target)
    assert fake.adapters == {adapter_name(str(first_target)): str(first_target.resolve())}
    assert served == {str(tiny_model_dir), adapter_name(str(first_target))}
    assert (tmp_path / "run" / "iter_2" / "target" / "adapter_config.json").is_file()


def test_a_generation_server_holding_another_model_is_a_one_line_error(tiny_model_dir, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer(model_id="Qwen/Qwen2.5-7B-Instruct", lora=True) as fake:
        with pytest.raises(MtsaError, match="holds neither"):
            run_train(config(tiny_model_dir, tmp_path, generation_server=fake.base_url))


def test_baseline_beta_stage1_reference_and_the_users_benign_prompts(tiny_model_dir, tmp_path, scripted_models,
                                                                      monkeypatch):
    """The no-future-reward baseline trains at its own beta (plain DPO's 0.1, not the target's 0.01);
    the diversity reference is the data the Stage 1 attacker was trained on, found through its
    adapter's `mtsa sft` record; the over-refusal guard draws from the user's --benign file."""
    data = tmp_path / "stage1.jsonl"
    turn = "Thinking 1: a plan the attacker learnt.\nAttack question 1: a question it learnt?"
    data.write_text(json.dumps({"messages": [{"role": "assistant", "content": turn}]}) + "\n")
    stage1 = tmp_path / "stage1_attacker"
    stage1.mkdir()
    (stage1 / "adapter_config.json").write_text("{}")  # never loaded: the models are scripted
    (stage1 / "mtsa_sft.json").write_text(json.dumps({"data": str(data)}))
    benign = tmp_path / "benign.jsonl"
    benign.write_text(json.dumps({"goal": "Write a loot table for a zombie survival game."}) + "\n")
    updates, guarded = [], []

    def record_update(config, pairs_path, model, out, objective, beta, learning_rate, seed):
        updates.append((out.name, objective, beta, seed))
        return {"skipped": "not trained in this test"}

    def record_guard(prompts, count, *rest):
        guarded.extend(p.goal for p in prompts)
        return []

    monkeypatch.setattr(loop, "update", record_update)
    monkeypatch.setattr(loop, "guard_pairs", record_guard)
    metrics = run_train(config(tiny_model_dir, tmp_path, attacker=f"hf:{tiny_model_dir}+{stage1}",
                               target_objective="dpo", benign=str(benign)))
    assert updates == [("attacker", "dpo", 0.1, 11), ("target", "dpo", 0.1, 12)]  # the phases' seeds
    assert metrics["reference_attacks"] == str(data)
    assert guarded == ["Write a loot table for a zombie survival game."]
    assert metrics["target_states"] == 2 and metrics["guard_prompts"] == 2


def test_a_damaged_metrics_file_is_a_one_line_error_on_resume(tmp_path):
    from mtsa.adversarial.loop import read_metrics

    assert read_metrics(tmp_path) == {}  # a phase not begun
    (tmp_path / "metrics.json").write_text('{"attacker_pairs": 3')  # cut short
    with pytest.raises(MtsaError, match="cannot read .*metrics.json") as error:
        read_metrics(tmp_path)
    assert "\n" not in str(error.value)
