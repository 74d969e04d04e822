import pytest

from mtsa.errors import MtsaError
from mtsa.stages import run_stage


def test_a_failing_stage_names_itself_and_the_way_to_resume(tmp_path, capfd):
    with pytest.raises(MtsaError, match="'sft' stage failed .*--resume"):
        run_stage("sft", data=tmp_path / "missing.jsonl", out=tmp_path / "adapter", full_finetune=False)
    output = capfd.readouterr()
    assert "$ mtsa sft --data" in output.out and "--no-full-finetune" in output.out
    assert "missing.jsonl" in output.err  # the stage's own one-line error comes first
