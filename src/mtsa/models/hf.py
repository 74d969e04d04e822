"""Hugging Face transformers backend: a local folder or Hub id, optionally with a LoRA adapter.

Generation is batched: conversations are rendered with the model's chat template, sorted by
length (less padding), left-padded and generated `batch_size` at a time. The dtype defaults
to `auto`: bfloat16 where the hardware computes it natively, else float32 (see `dtype.py`).

What a batch shares is computed once: a common prompt prefix is prefilled once into a
preallocated cache (`_new_cache`), and on CPU the decoding steps read it once for all rows
(`prefix_attention.py`). What a dialogue computed in earlier calls is kept and reused, so a
resample or the next turn prefills only its new tokens (`kv_reuse.py`). `prefix_cache=False`
turns both caches off. Sampling draws from the top of the vocabulary only (`sampling.py`). In
float32 on x86 CPUs the linear layers' weights are packed once for oneDNN
(`packed_linear.py`; `packed_linear=False` keeps transformers' layers).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LogitsProcessorList, StaticCache

from mtsa.errors import MtsaError
from mtsa.models.adapters import local_adapter, with_adapter
from mtsa.models.base import Conversation, Reply, SamplingParams
from mtsa.models.causal_lm import cache_argument, in_length_order, left_pad, load_causal_lm, render_chat
from mtsa.models.context import truncate_oldest
from mtsa.models.kv_reuse import Entry, KVReuseCache, Reuse
from mtsa.models.packed_linear import can_pack, pack_linear_layers
from mtsa.models.prefix_attention import shared_prefix, use_shared_prefix_attention
from mtsa.models.sampling import NucleusSampler


class HFChatModel:
    """A causal LM with a chat template, answering batches of conversations."""

    can_prefill = True  # the chat template can leave a final assistant message open

    def __init__(self, path: str, adapter: str | None = None, *, name: str | None = None,
                 device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 max_context: int | None = None, trust_remote_code: bool = False, prefix_cache: bool = True,
                 kv_reuse_mb: int = 512, packed_linear: bool = True) -> None:
        self.name = name or f"hf:{path}" + (f"+{adapter}" if adapter else "")
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self._prefix_caches: dict[tuple[int, ...], object] = {}
        self._reuse = KVReuseCache(kv_reuse_mb)  # see kv_reuse.py; 0 keeps nothing
        if adapter:
            local_adapter(adapter)  # fail before the (slow) model load
        self.tokenizer, self.model, self.device = load_causal_lm(
            path, device=device, dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code,
            name=self.name)
        if prefix_cache:
            use_shared_prefix_attention(self.model)
        if adapter:
            self.model = with_adapter(self.model, adapter)
            self.model.eval()
        if packed_linear and can_pack(self.model):
            pack_linear_layers(self.model, batch_size)
        self.max_context = max_context or getattr(self.model.config, "max_position_embeddings", None)

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Reply]:
        prompts = [self._encode(conversation, params.max_new_tokens) for conversation in conversations]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        return in_length_order(prompts, self.batch_size,
                               lambda rows: self._generate_batch([prompts[i] for i in rows], params.rows(rows)))

    def _encode(self, conversation: Conversation, max_new_tokens: int) -> list[int]:
        """Chat-template token ids, with the oldest turns dropped if they would not fit; a final
        assistant message is left open for the model to continue."""
        def render(c: Conversation) -> list[int]:
            return render_chat(self.tokenizer, c, continue_final=c[-1]["role"] == "assistant")

        if self.max_context:
            budget = self.max_context - max_new_tokens
            if budget < 1:
                raise MtsaError(f"{self.name}: max_context {self.max_context} leaves no room for a prompt "
                                f"beside {max_new_tokens} new tokens")
            conversation = truncate_oldest(conversation, lambda c: len(render(c)) <= budget, self.name)
            return render(conversation)[-budget:]
        return render(conversation)

    @torch.inference_mode()
    def _cached_prefix_length(self, prompts: list[list[int]]) -> int:
        """Length of the prefix to reuse: one already cached that every prompt extends (no new
        work), else the batch's own shared prefix when there are several prompts, else 0."""
        for prefix in self._prefix_caches:
            if all(len(p) > len(prefix) and tuple(p[:len(prefix)]) == prefix for p in prompts):
                return len(prefix)
        return _shared_prefix_length(prompts) if len(prompts) > 1 else 0

    @torch.no_grad()  # not inference_mode: generate() writes into this cache outside it
    def _new_cache(self, rows: int, length: int, prefix: tuple[int, ...] = ()):
        """A preallocated KV cache for `rows` rows of up to `length` tokens, already holding the
        keys and values of a shared prompt `prefix` (or None where the model cannot take one).

        Preallocated because transformers' default cache concatenates every layer's keys and
        values at each decoded token: a copy of the whole cache per step, which grows with batch
        and length. The prefix: attacker prompts of a run share a long system prompt (strategies,
        format, example) and differ only after it; computing it once, and remembering it
        across calls, removes most of the prefill, which batching alone cannot speed up.
        """
        try:
            cache = StaticCache(config=self.model.config, max_cache_len=length)
        except (TypeError, ValueError, KeyError, AttributeError):  # e.g. recurrent models
            return None
        if prefix:
            if prefix not in self._prefix_caches:
                if len(self._prefix_caches) >= 4:
                    self._prefix_caches.pop(next(iter(self._prefix_caches)))
                ids = torch.tensor([prefix], device=self.device)
                output = self.model(input_ids=ids, use_cache=True)
                self._prefix_caches[prefix] = getattr(output, cache_argument(self.model))  # renamed in 5.x
            for index, layer in enumerate(self._prefix_caches[prefix].layers):
                cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), index)
        return cache

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams,
                        shared: int | None = None) -> list[Reply]:
        pad = self.tokenizer.pad_token_id
        if shared is None:
            shared = self._cached_prefix_length(prompts) if self.prefix_cache else 0
        reusing = self.prefix_cache and self._reuse.budget > 0
        reused = [self._reuse.lookup(p, shared) if reusing else None for p in prompts]
        first = _rows_to_prefill_first([len(p) - shared - (r.length if r else 0)
                                        for p, r in zip(prompts, reused)]) if reusing else []
        if first:  # into the reuse cache, in a call of their own; then look again
            self._generate_batch([prompts[i] for i in first], PREFILL_ONLY, shared)
            reused = [self._reuse.lookup(p, shared) for p in prompts]
        done = [r.length if r else 0 for r in reused]  # tokens after the prefix already computed
        # Each row: [shared prefix][padding][reused tokens][padding][new tokens]. Positions come
        # from the attention mask, so each row reads exactly as its unpadded prompt would; the
        # prefix and the reused tokens are in the cache already, and only new tokens are prefilled.
        old_ids, old_mask = left_pad([p[shared:shared + n] for p, n in zip(prompts, done)], pad, self.device)
        new_ids, new_mask = left_pad([p[shared + n:] for p, n in zip(prompts, done)], pad, self.device)
        prefix = torch.tensor([prompts[0][:shared]], dtype=torch.long, device=self.device).expand(len(prompts), -1)
        input_ids = torch.cat([prefix, old_ids, new_ids], dim=1)
        attention = torch.cat([torch.ones_like(prefix), old_mask, new_mask], dim=1)
        width = input_ids.shape[1]
        cache = self._new_cache(len(prompts), width + params.max_new_tokens, tuple(prompts[0][:shared]))
        if cache is None:  # nothing can be held in a cache: read the prompts in full
            shared, reused = 0, [None] * len(prompts)
            input_ids, attention = left_pad(prompts, pad, self.device)
            width = input_ids.shape[1]
        elif any(done):
            _write_reused(cache, reused, old_ids.shape[1])
        sampling: dict = {"do_sample": False}  # greedy, or argmax over what NucleusSampler drew
        temperatures = [params.temperature_for(i) for i in range(len(prompts))]
        if max(temperatures) > 0:
            sampler = NucleusSampler(temperatures, params.top_p, list(params.seeds) if params.seeds else None)
            sampling["logits_processor"] = LogitsProcessorList([sampler])
        if params.stop:
            sampling["stopping_criteria"] = [_StopOnText(self.tokenizer, params.stop, width)]
        if cache is not None:
            sampling[cache_argument(self.model)] = cache
        with shared_prefix(shared):
            output = self.model.generate(input_ids=input_ids, attention_mask=attention,
                                         max_new_tokens=params.max_new_tokens, pad_token_id=pad, **sampling)
        eos_ids = _eos_ids(self.model, self.tokenizer)
        rows = output[:, width:].tolist()
        lengths = [next((i for i, token in enumerate(row) if token in eos_ids), len(row)) for row in rows]
        if reusing and cache is not None:
            for index, (prompt, row, length) in enumerate(zip(prompts, rows, lengths)):
                # the last token drawn was never fed back, so the cache holds keys up to the one before it
                kept = min(length, len(row) - 1)
                columns = torch.cat([attention[index, shared:].nonzero().flatten() + shared,
                                     torch.arange(width, width + kept, device=self.device)])
                self._reuse.store(Entry(tuple(prompt + row[:kept]), shared,
                                        tuple(layer.keys[index][:, columns] for layer in cache.layers),
                                        tuple(layer.values[index][:, columns] for layer in cache.layers)))
        return [Reply(text=_cut_at_stop(self.tokenizer.decode(row[:length], skip_special_tokens=True), params.stop),
                      prompt_tokens=len(prompt), completion_tokens=length)
                for prompt, row, length in zip(prompts, rows, lengths)]


PREFILL_ONLY = SamplingParams(temperature=0, max_new_tokens=1)
MIN_PREFILL_SAVING = 512  # padded token positions a separate prefill call must save to pay for itself


def _rows_to_prefill_first(new_tokens: list[int]) -> list[int]:
    """Rows whose new tokens should be prefilled before the batched call, or none.

    A batch prefills every row to the length of the longest: when a resample (one new token)
    shares a call with a next turn (hundreds), most of that work is padding. Prefilling the
    long rows (over half the longest) on their own first, then the batch with what is left,
    costs less when it saves at least MIN_PREFILL_SAVING padded positions.
    """
    longest = max(new_tokens)
    long = [i for i, n in enumerate(new_tokens) if 2 * n > longest]
    left = max((n for n in new_tokens if 2 * n <= longest), default=1)
    saving = len(new_tokens) * longest - (len(long) * longest + len(new_tokens) * left)
    return long if len(long) < len(new_tokens) and saving >= MIN_PREFILL_SAVING else []


def _write_reused(cache, reused: list[Reuse | None], width: int) -> None:
    """Put each row's reused keys and values into the cache after the prefix, right-aligned in a
    block of `width` positions (the `[padding][reused tokens]` part of the row)."""
    sample = next(r for r in reused if r is not None)
    for index in range(len(sample.entry.keys)):
        heads, _, key_dim = sample.entry.keys[index].shape
        value_dim = sample.entry.values[index].shape[-1]
        keys = sample.entry.keys[index].new_zeros(len(reused), heads, width, key_dim)
        values = sample.entry.values[index].new_zeros(len(reused), heads, width, value_dim)
        for row, reuse in enumerate(reused):
            if reuse is not None:
                keys[row, :, width - reuse.length:], values[row, :, width - reuse.length:] = reuse.layer(index)
        cache.update(keys, values, index)


MIN_SHARED_PREFIX = 64  # tokens; below this a prefix cache saves less than it costs


def _shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens all prompts start with (leaving each at least one of its own), or 0 if too few."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


class _StopOnText:
    """Stop a row once its generated text (not the prompt) contains a stop string.

    transformers' own `stop_strings` also matches across the prompt boundary, so a stop
    string such as "\nThinking" fires on the very first token after "assistant\n".
    """

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_width: int) -> None:
        self.tokenizer, self.stop, self.prompt_width = tokenizer, stop, prompt_width
        # Checked after every token, so a stop string can only just have been completed: decoding
        # the last few tokens (a token holds at least one byte) is enough, not the whole reply.
        self.window = max(len(s.encode()) for s in stop) + 2

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        start = max(self.prompt_width, input_ids.shape[1] - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stop) for text in texts], device=input_ids.device)


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """transformers keeps the stop string in the output; the protocol says it is not part of the reply."""
    for marker in stop:
        text = text.split(marker, 1)[0]
    return text.strip()


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}
