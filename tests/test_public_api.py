"""The package's public names, and the README's Python example, run on the tiny model."""

import re
from pathlib import Path

import mtsa
import mtsa.adversarial
import mtsa.rewards

README = Path(__file__).parent.parent / "README.md"


def test_every_exported_name_exists():
    assert all(hasattr(mtsa, name) for name in mtsa.__all__)
    for package in (mtsa.models, mtsa.judges, mtsa.rollout, mtsa.goals, mtsa.synth, mtsa.training,
                    mtsa.adversarial, mtsa.rewards):
        assert all(hasattr(package, name) for name in package.__all__)


def test_the_readme_example_runs(tiny_model_dir, capsys):
    example = re.search(r"## Use it from Python\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 12
    example = example.replace('load_model("embedded")', f'load_model("hf:{tiny_model_dir}")')
    example = example.replace('load_judge("embedded")', 'load_judge("keyword")')
    short = ("attacker_sampling=mtsa.SamplingParams(max_new_tokens=8), "
             "target_sampling=mtsa.SamplingParams(max_new_tokens=4)")
    example = example.replace("RolloutSettings(turns=2)", f"RolloutSettings(turns=2, {short})")
    exec(compile(example, "README.md", "exec"), {"mtsa": mtsa})
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 4
