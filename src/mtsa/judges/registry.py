"""Judge names, as the CLI and configs spell them.

    embedded[?OPTIONS]        the offline default: P(harmful request) x P(the reply helps)
                              x P(the reply is about the request);
                              options: requests=PATH (a request classifier from
                              `mtsa fit-requests`: a JSON file, or a folder with --fine-tune),
                              reader=DIR (a reply reader from scripts/fit_embedded_judge.py),
                              batch_size
    refusal[?OPTIONS]         full compliance / partial refusal / full refusal (over-refusal);
                              its score is P(refusal); options: reader=DIR, batch_size
    keyword                   refusal-phrase matching (a baseline, not a real judge)
    llama-guard[:MODEL][?OPTIONS]  a Llama-Guard-3-style classifier (default meta-llama/Llama-Guard-3-8B);
                              options: the keyword arguments of LlamaGuardJudge (device, dtype,
                              batch_size, max_context, trust_remote_code)
    llm:MODEL_SPEC            any chat model with a rubric prompt, e.g. llm:openai:gpt-4o@https://...

A judge's options are its constructor's keyword-only arguments (`spec.options_of`).
"""

from __future__ import annotations

from mtsa.errors import MtsaError
from mtsa.judges.base import Judge
from mtsa.judges.requests import check_requests_option
from mtsa.models.registry import check_model, load_model
from mtsa.models.spec import options_of, split_query, typed_options

KNOWN = "embedded, refusal, keyword, llama-guard[:MODEL] or llm:MODEL_SPEC"


def judge_class(body: str) -> type | None:
    """The class behind a judge name that takes options (imported when asked for), else None."""
    if body == "embedded":
        from mtsa.judges.embedded import EmbeddedJudge

        return EmbeddedJudge
    if body == "refusal":
        from mtsa.judges.refusal import RefusalJudge

        return RefusalJudge
    if body == "llama-guard" or body.startswith("llama-guard:"):
        from mtsa.judges.llama_guard import LlamaGuardJudge

        return LlamaGuardJudge
    return None


def check_judge(name: str) -> None:
    """Validate a judge name without loading a model."""
    if name == "keyword":
        return
    if name.startswith("llm:"):
        check_model(name[len("llm:"):])
        return
    _args(name)


def load_judge(name: str) -> Judge:
    check_judge(name)
    if name == "keyword":
        from mtsa.judges.keyword import KeywordJudge

        return KeywordJudge()
    if name.startswith("llm:"):
        from mtsa.judges.llm import LLMJudge

        return LLMJudge(load_model(name[len("llm:"):]))
    cls, path, options = _args(name)
    return cls(path, **options) if path else cls(**options)


def _args(name: str) -> tuple[type, str, dict]:
    """(class, model path or "", typed options) of a judge name with options."""
    body, _, query = name.partition("?")
    cls = judge_class(body)
    if cls is None:
        raise MtsaError(f"unknown judge '{name}': expected {KNOWN}")
    options = typed_options(f"judge '{name}'", split_query(query), options_of(cls))
    check_requests_option(options)
    return cls, body.partition(":")[2], options
