from mtsa.report.summary import format_table, summarize
from mtsa.rollout.records import DialogueRecord, TurnRecord


def dialogue(scores, failure=False):
    turns = [TurnRecord(i + 1, "t", "role_play", "q", "r", p, 1, 1, 1, 1) for i, p in enumerate(scores)]
    return DialogueRecord("id", "goal", "", turns, format_failure=failure)


def test_asr_and_cumulative_asr_by_turn():
    dialogues = [dialogue([0.1, 0.9, 0.2]), dialogue([0.6, 0.0, 0.0]), dialogue([0.1, 0.1, 0.1]),
                 dialogue([0.2, 0.2, 0.5]), dialogue([], failure=True)]
    summary = summarize(dialogues, turns=3, threshold=0.5, judge="j", attacker="a", target="t", goals="g")
    assert summary["asr"] == 0.75
    assert summary["asr_by_turn"] == [0.25, 0.5, 0.75]
    assert summary["n_dialogues"] == 4 and summary["format_failures"] == 1 and summary["n_goals"] == 5
    assert summary["judge"] == "j" and summary["strategies"] == {"role_play": 12}
    table = format_table(summary)
    assert "75.0%" in table and "format failures" in table


def test_no_judged_dialogues_gives_zero_not_a_crash():
    summary = summarize([dialogue([], failure=True)], turns=2, threshold=0.5, judge="j", attacker="a",
                        target="t", goals="g")
    assert summary["asr"] == 0.0 and summary["asr_by_turn"] == [0.0, 0.0]
