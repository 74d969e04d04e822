"""Any Hugging Face sequence-classification reward model as the helpfulness scorer (`rm:PATH_OR_ID`).

The model reads the dialogue through its chat template, ending with the reply, and gives one
scalar; helpfulness = sigmoid((scalar - shift) / scale), in [0, 1] as the target's reward
needs. ArmoRM (the paper's) returns its preference score as `score` from its own remote code,
so it needs `trust_remote_code=true`, which is never on unless the user sets it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtsa.errors import MtsaError, first_line
from mtsa.judges.base import JudgeItem
from mtsa.models.causal_lm import left_pad, resolve_device
from mtsa.models.dtype import choose_dtype


class RewardModelHelpfulness:
    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_length: int = 4096, scale: float = 1.0, shift: float = 0.0,
                 trust_remote_code: bool = False) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if scale <= 0:
            raise MtsaError(f"rm '{path}': scale must be > 0, got {scale}")
        self.name = f"rm:{path}"
        self.device = resolve_device(device)
        self.batch_size, self.max_length, self.scale, self.shift = batch_size, max_length, scale, shift
        torch_dtype = choose_dtype(dtype, self.device, f"{path} (reward model)").torch_dtype
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=torch_dtype, trust_remote_code=trust_remote_code).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise MtsaError(f"could not load reward model '{path}': {first_line(exc)}") from None
        if not self.tokenizer.chat_template:
            raise MtsaError(f"reward model '{path}' has no chat template to read a dialogue with")
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else self.tokenizer.eos_token_id
        if self.model.config.pad_token_id is None:  # it finds each row's last real token by the pad id
            self.model.config.pad_token_id = self.pad

    @torch.inference_mode()
    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(items), self.batch_size):
            rows = [self._encode(item) for item in items[start:start + self.batch_size]]
            ids, mask = left_pad(rows, self.pad, self.device)
            output = self.model(input_ids=ids, attention_mask=mask)
            raw = getattr(output, "score", None)  # ArmoRM's preference score; else the first logit
            raw = (output.logits[:, 0] if raw is None else raw.reshape(len(rows), -1)[:, 0]).float()
            scores += torch.sigmoid((raw - self.shift) / self.scale).tolist()
        return scores

    def _encode(self, item: JudgeItem) -> list[int]:
        """The dialogue and the reply, through the chat template; the oldest tokens go if too long."""
        conversation = (item.history or [{"role": "user", "content": item.goal}]) + [
            {"role": "assistant", "content": item.reply}]
        encoded = self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])[-self.max_length:]
