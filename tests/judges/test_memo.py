from mtsa.judges.memo import TextMemo


def test_a_full_memo_still_answers_for_every_text_it_is_asked_about():
    calls = []

    def compute(texts):
        calls.append(list(texts))
        return [len(t) for t in texts]

    memo = TextMemo(size=3)
    assert memo.get(("enc",), ["a", "bb"], compute) == [1, 2]
    # "a" is remembered, but "ccc" and "dddd" overflow the memo: it is emptied and all three computed
    assert memo.get(("enc",), ["a", "ccc", "dddd", "a"], compute) == [1, 3, 4, 1]
    assert calls == [["a", "bb"], ["a", "ccc", "dddd"]]
    assert memo.get(("enc",), ["ccc"], compute) == [3] and len(calls) == 2  # remembered
    assert memo.get(("other",), ["ccc"], compute) == [3] and len(calls) == 3  # another scope: computed
