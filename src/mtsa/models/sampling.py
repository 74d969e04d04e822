"""Temperature + top-p (nucleus) sampling that is cheap on a CPU with a large vocabulary.

transformers' sampler sorts the whole vocabulary for top-p, then draws with
`torch.multinomial`, which draws one exponential variate per vocabulary entry: at every
decoding step, for every row, work proportional to the vocabulary (49k tokens for the
embedded model). The nucleus is usually far smaller than the vocabulary, so `NucleusSampler`
sorts only the 4,096 most likely tokens (`topk`) and draws one uniform number per row; a row
whose nucleus is wider falls back to sorting its whole vocabulary. The distribution is the
same as transformers' temperature + top-p sampling; the random stream is not. Measurements:
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import torch


class NucleusSampler:
    """A logits processor that draws the next token itself.

    It returns scores in which only the drawn token is finite, so `generate(do_sample=False)`
    (a cheap argmax) emits exactly that token. With `seeds` (one per row) each row draws from
    its own random stream, so what a row generates does not depend on the other rows.
    `temperature` is one for all rows or one per row; a row at temperature 0 is greedy.
    """

    def __init__(self, temperature: float | list[float], top_p: float, seeds: list[int] | None = None,
                 candidates: int = 4096) -> None:
        temperatures = temperature if isinstance(temperature, list) else [temperature]
        if max(temperatures) <= 0 or min(temperatures) < 0:
            raise ValueError("NucleusSampler needs temperatures >= 0, one above 0 (use greedy decoding otherwise)")
        self.temperature = torch.tensor(temperatures, dtype=torch.float32).unsqueeze(1)
        self.top_p, self.candidates = top_p, candidates
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds] if seeds is not None else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        temperature = self.temperature.to(scores.device)
        greedy = temperature <= 0
        tokens = self.draw(scores.float() / temperature.masked_fill(greedy, 1.0))
        if greedy.any():
            tokens = torch.where(greedy.squeeze(1), scores.argmax(-1), tokens)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, tokens.unsqueeze(1), 0.0)

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """One token id per row of `logits` (already divided by the temperature)."""
        uniform = self._uniform(logits.shape[0]).to(logits.device)
        if self.top_p >= 1.0:  # the whole vocabulary: an inverse-CDF draw needs no sorting
            return _draw(logits.softmax(-1), None, 1.0, uniform)
        log_z = logits.logsumexp(-1, keepdim=True)
        values, indices = logits.topk(min(self.candidates, logits.shape[-1]))
        probs = (values - log_z).exp()
        tokens = _draw(probs, indices, self.top_p, uniform)
        wide = probs.sum(-1) < self.top_p  # nucleus extends past the candidates
        if wide.any():
            values, indices = logits[wide].sort(-1, descending=True)
            tokens[wide] = _draw((values - log_z[wide]).exp(), indices, self.top_p, uniform[wide])
        return tokens

    def _uniform(self, rows: int) -> torch.Tensor:
        """One U[0, 1) number per row: from each row's own generator, or the global one."""
        if self.generators is None:
            return torch.rand(rows, 1, dtype=torch.float64)
        return torch.cat([torch.rand(1, 1, generator=g, dtype=torch.float64) for g in self.generators])


def _draw(probs: torch.Tensor, indices: torch.Tensor | None, top_p: float, uniform: torch.Tensor) -> torch.Tensor:
    """Draw with `uniform` from `probs` (descending when `indices` maps them to token ids)
    restricted to the nucleus: the most likely tokens up to and including the one that
    reaches `top_p`."""
    if top_p < 1.0:
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        keep = before < top_p
        keep[:, 0] = True
        probs = probs * keep
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    point = torch.minimum((uniform * total.double()).to(cdf.dtype), torch.nextafter(total, torch.zeros_like(total)))
    position = torch.searchsorted(cdf, point, right=True)  # first entry whose cdf exceeds the point
    return position.squeeze(1) if indices is None else indices.gather(1, position).squeeze(1)
