"""Judge names, as the CLI and configs spell them.

    embedded                  the offline default (MiniLM features + a fitted head)
    keyword                   refusal-phrase matching (a baseline, not a real judge)
    llama-guard[:MODEL][?OPTIONS]  a Llama-Guard-3-style classifier (default meta-llama/Llama-Guard-3-8B);
                              options: the keyword arguments of LlamaGuardJudge (device, dtype,
                              batch_size, max_context, trust_remote_code)
    llm:MODEL_SPEC            any chat model with a rubric prompt, e.g. llm:openai:gpt-4o@https://...
"""

from __future__ import annotations

from mtsa.errors import MtsaError
from mtsa.judges.base import Judge
from mtsa.models.registry import check_model, load_model
from mtsa.models.spec import options_of, split_query, typed_options

KNOWN = "embedded, keyword, llama-guard[:MODEL] or llm:MODEL_SPEC"


def check_judge(name: str) -> None:
    """Validate a judge name without loading anything."""
    if name in ("embedded", "keyword"):
        return
    if name.startswith("llama-guard"):
        _llama_guard_args(name)
        return
    if name.startswith("llm:"):
        check_model(name[len("llm:"):])
        return
    raise MtsaError(f"unknown judge '{name}': expected {KNOWN}")


def load_judge(name: str) -> Judge:
    check_judge(name)
    if name == "embedded":
        from mtsa.judges.embedded import EmbeddedJudge

        return EmbeddedJudge()
    if name == "keyword":
        from mtsa.judges.keyword import KeywordJudge

        return KeywordJudge()
    if name.startswith("llm:"):
        from mtsa.judges.llm import LLMJudge

        return LLMJudge(load_model(name[len("llm:"):]))
    from mtsa.judges.llama_guard import LlamaGuardJudge

    path, options = _llama_guard_args(name)
    return LlamaGuardJudge(path, **options) if path else LlamaGuardJudge(**options)


def _llama_guard_args(name: str) -> tuple[str, dict]:
    body, _, query = name.partition("?")
    if body != "llama-guard" and not body.startswith("llama-guard:"):
        raise MtsaError(f"unknown judge '{name}': expected {KNOWN}")
    from mtsa.judges.llama_guard import LlamaGuardJudge

    return body.partition(":")[2], typed_options(f"judge '{name}'", split_query(query), options_of(LlamaGuardJudge))
