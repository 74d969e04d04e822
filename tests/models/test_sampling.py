import pytest
import torch
from transformers import TopPLogitsWarper

from mtsa.models.base import SamplingParams
from mtsa.models.sampling import NucleusSampler


def frequencies(sampler: NucleusSampler, logits: torch.Tensor, draws: int) -> torch.Tensor:
    torch.manual_seed(0)
    tokens = sampler.draw(logits.expand(draws, -1).contiguous())
    return torch.bincount(tokens, minlength=logits.shape[-1]).float() / draws


def expected(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """transformers' own temperature-1 top-p distribution."""
    return TopPLogitsWarper(top_p)(None, logits.clone()).softmax(-1)[0]


@pytest.mark.parametrize("candidates", [4096, 3])  # 3: the nucleus is wider, so rows fall back to a full sort
@pytest.mark.parametrize("top_p", [0.5, 0.9, 1.0])
def test_draws_follow_transformers_top_p_distribution(candidates, top_p):
    torch.manual_seed(1)
    logits = torch.randn(1, 40) * 2
    observed = frequencies(NucleusSampler(1.0, top_p, candidates=candidates), logits, 40_000)
    target = expected(logits, top_p)
    assert (observed[target == 0] == 0).all()  # never outside the nucleus
    assert torch.allclose(observed, target, atol=0.01)


def test_temperature_divides_the_logits():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    sampler = NucleusSampler(2.0, 1.0)
    assert torch.isfinite(sampler(None, logits)).sum() == 1  # one token left for greedy decoding to pick
    torch.manual_seed(0)
    observed = torch.bincount(sampler.draw((logits / 2.0).expand(40_000, -1).contiguous()), minlength=4) / 40_000
    assert torch.allclose(observed, (logits[0] / 2.0).softmax(-1), atol=0.01)


def test_rows_are_independent_and_a_peaked_row_is_deterministic():
    logits = torch.zeros(3, 10)
    logits[1, 7] = 100.0  # all the mass on token 7
    torch.manual_seed(0)
    tokens = NucleusSampler(1.0, 0.9).draw(logits)
    assert tokens[1] == 7
    assert tokens.shape == (3,)


def test_zero_temperature_is_refused():
    with pytest.raises(ValueError):
        NucleusSampler(0.0, 0.9)


def test_row_seeds_make_each_row_independent_of_the_others():
    torch.manual_seed(3)
    logits = torch.randn(4, 50)

    def run(seeds, rows):
        sampler = NucleusSampler(1.0, 0.9, seeds=seeds)
        return torch.stack([sampler.draw(logits[rows]) for _ in range(20)], dim=1)

    together = run([11, 12, 13, 14], [0, 1, 2, 3])
    assert torch.equal(run([13], [2])[0], together[2])  # row 2 alone draws what it drew in the batch
    assert torch.equal(run([14, 11], [3, 0]), together[[3, 0]])  # order does not matter either
    assert not torch.equal(together[0], run([99], [0])[0])  # another seed, another stream


def test_per_row_temperatures_scale_each_row_and_zero_is_greedy():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(3, -1).contiguous()
    sampler = NucleusSampler([0.0, 1.0, 4.0], 1.0)
    torch.manual_seed(0)
    draws = torch.stack([sampler(None, logits).argmax(-1) for _ in range(4000)])  # (draws, rows)
    assert (draws[:, 0] == 0).all()  # temperature 0: always the top token
    for row, temperature in ((1, 1.0), (2, 4.0)):
        observed = torch.bincount(draws[:, row], minlength=4) / 4000
        assert torch.allclose(observed, (logits[0] / temperature).softmax(-1), atol=0.03)


def test_sampling_params_rows_select_per_row_settings():
    params = SamplingParams(temperature=0.7, seeds=(1, 2, 3), temperatures=(0.6, 1.0, 1.2))
    sub = params.rows([2, 0])
    assert sub.seeds == (3, 1) and sub.temperatures == (1.2, 0.6)
    assert sub.temperature_for(0) == 1.2 and SamplingParams(temperature=0.7).rows([0]).temperature_for(0) == 0.7
