"""The OpenAI-compatible backend against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import socket
from typing import Iterator

import pytest
from fake_openai_server import FakeOpenAIServer

from mtsa.errors import MtsaError
from mtsa.models.base import Conversation, SamplingParams
from mtsa.models.openai import OpenAIChatModel, mask_key, parse_retry_after

PARAMS = SamplingParams(temperature=0.0, top_p=0.9, max_new_tokens=32, seed=7)
KEY_ENV = "MTSA_TEST_OPENAI_KEY"
SECRET = "sk-test-secret-0123456789"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def make_model(base_url: str, **kwargs: object) -> OpenAIChatModel:
    options: dict[str, object] = {"api_key_env": KEY_ENV, "retry_backoff_s": 0.01, "timeout_s": 5.0}
    options.update(kwargs)
    return OpenAIChatModel("fake-model", base_url, **options)  # type: ignore[arg-type]


def user(text: str) -> Conversation:
    return [{"role": "user", "content": text}]


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_batch_replies_in_input_order_with_usage(server: FakeOpenAIServer) -> None:
    model = make_model(server.base_url + "/")  # trailing slash accepted
    replies = model.generate([user(f"message {i}") for i in range(20)], PARAMS)
    assert [r.text for r in replies] == [f"echo: message {i}" for i in range(20)]
    assert (replies[0].prompt_tokens, replies[0].completion_tokens) == (2, 3)
    assert all(r.path == "/v1/chat/completions" for r in server.completions)
    assert model.name == f"openai:fake-model@{server.base_url}"


def test_usage_estimated_when_server_omits_it() -> None:
    with FakeOpenAIServer(include_usage=False) as fake:
        [reply] = make_model(fake.base_url).generate([user("x" * 40)], PARAMS)
    assert reply.text == "echo: " + "x" * 40
    assert reply.prompt_tokens > 0 and reply.completion_tokens == (len(reply.text) + 3) // 4


def test_replies_are_text_a_utf8_file_can_hold() -> None:
    with FakeOpenAIServer(reply_fn=lambda messages: "a\ud800b") as fake:  # valid JSON, not valid UTF-8
        [reply] = make_model(fake.base_url).generate([user("x")], PARAMS)
    assert reply.text == "a?b"
    with FakeOpenAIServer(reply_fn=lambda messages: [{"type": "text", "text": "hi"}], include_usage=False) as fake:
        with pytest.raises(MtsaError, match="unexpected response"):
            make_model(fake.base_url).generate([user("x")], PARAMS)


def test_concurrency_limit_respected_and_used() -> None:
    with FakeOpenAIServer(delay_s=0.2) as fake:
        replies = make_model(fake.base_url, concurrency=4).generate([user(str(i)) for i in range(12)], PARAMS)
    assert len(replies) == 12
    assert 1 < fake.max_in_flight <= 4  # requests overlapped, never more than the limit


def test_sampling_params_forwarded(server: FakeOpenAIServer) -> None:
    make_model(server.base_url).generate([user("hi")], PARAMS)
    body = server.completions[0].body
    assert body is not None
    assert body["model"] == "fake-model"
    assert body["messages"] == user("hi")
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.0, 0.9, 32, 7)


def test_row_seeds_and_temperatures_go_to_their_own_requests(server: FakeOpenAIServer) -> None:
    make_model(server.base_url).generate([user("a"), user("b")],
                                         SamplingParams(seed=7, seeds=(11, 12), temperatures=(0.6, 1.2)))
    sent = {r.body["messages"][0]["content"]: (r.body["seed"], r.body["temperature"])
            for r in server.completions if r.body}
    assert sent == {"a": (11, 0.6), "b": (12, 1.2)}  # Stage 2's branches of one state, one call


def test_seed_omitted_when_none(server: FakeOpenAIServer) -> None:
    make_model(server.base_url).generate([user("hi")], SamplingParams())
    body = server.completions[0].body
    assert body is not None and "seed" not in body


@pytest.mark.parametrize("status", [500, 429])
def test_retries_transient_failures_then_succeeds(status: int) -> None:
    with FakeOpenAIServer(fail_first=2, fail_status=status) as fake:
        replies = make_model(fake.base_url, max_retries=3).generate([user("again")], PARAMS)
    assert replies[0].text == "echo: again"
    assert len(fake.completions) == 3


def test_exhausted_retries_raise_one_line_error() -> None:
    with FakeOpenAIServer(fail_first=10, fail_status=503) as fake:
        with pytest.raises(MtsaError) as info:
            make_model(fake.base_url, max_retries=2).generate([user("x")], PARAMS)
    message = str(info.value)
    assert "\n" not in message
    assert fake.base_url in message and "HTTP 503" in message and "injected failure 503" in message
    assert len(fake.completions) == 3


def test_non_retryable_400_raises_at_once() -> None:
    with FakeOpenAIServer(fail_first=1, fail_status=400) as fake:
        with pytest.raises(MtsaError) as info:
            make_model(fake.base_url).generate([user("x")], PARAMS)
    message = str(info.value)
    assert "\n" not in message
    assert fake.base_url in message and "HTTP 400" in message and "injected failure 400" in message
    assert len(fake.completions) == 1


def test_api_key_sent_as_bearer_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer(require_key=SECRET) as fake:
        model = make_model(fake.base_url)
        model.check_reachable()
        model.generate([user("hi")], PARAMS)
        assert fake.completions[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(model) and SECRET not in str(model) and SECRET not in model.name


def test_rejected_key_is_masked_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer(require_key="another-key") as fake:
        model = make_model(fake.base_url)
        with pytest.raises(MtsaError) as generate_error:
            model.generate([user("hi")], PARAMS)
        with pytest.raises(MtsaError) as check_error:
            model.check_reachable()
    for message in (str(generate_error.value), str(check_error.value)):
        assert SECRET not in message and KEY_ENV in message and "401" in message
    assert "Incorrect API key provided" in str(generate_error.value)  # the server's own words


def test_no_key_means_no_authorization_header(server: FakeOpenAIServer) -> None:
    make_model(server.base_url).generate([user("hi")], PARAMS)
    assert "authorization" not in server.completions[0].headers


def test_check_reachable_ignores_missing_models_route(server: FakeOpenAIServer) -> None:
    make_model(server.base_url).check_reachable()
    make_model(server.base_url.removesuffix("/v1") + "/elsewhere").check_reachable()  # 404 is fine


def test_unreachable_server() -> None:
    url = closed_port_url()
    model = make_model(url, max_retries=1, timeout_s=1.0)
    with pytest.raises(MtsaError, match="cannot reach the OpenAI-compatible server at") as check_error:
        model.check_reachable()
    with pytest.raises(MtsaError, match="failed after 2 attempts") as generate_error:
        model.generate([user("hi")], PARAMS)
    for message in (str(check_error.value), str(generate_error.value)):
        assert url in message and "\n" not in message


def test_timeout_is_retried_then_reported() -> None:
    with FakeOpenAIServer(delay_s=1.0) as fake:
        with pytest.raises(MtsaError, match="failed after 2 attempts: ReadTimeout"):
            make_model(fake.base_url, max_retries=1, timeout_s=0.2).generate([user("slow")], PARAMS)
    assert len(fake.completions) == 2


def test_url_without_scheme_rejected() -> None:
    with pytest.raises(MtsaError, match="must start with http"):
        OpenAIChatModel("m", "127.0.0.1:8000/v1")


def test_context_tokens_drops_oldest_turns(server: FakeOpenAIServer) -> None:
    system = {"role": "system", "content": "be brief"}
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "w" * 400} for i in range(9)]
    # ~106 tokens per turn, 32 reserved for the reply: room for the system message and 3 turns.
    model = make_model(server.base_url, context_tokens=400)
    model.generate([[system, *turns]], PARAMS)
    sent = server.completions[0].body
    assert sent is not None
    assert sent["messages"][0] == system
    assert sent["messages"][-1] == turns[-1]
    assert [m["content"][:7] for m in sent["messages"][1:]] == ["turn 6 ", "turn 7 ", "turn 8 "]


def test_works_inside_running_event_loop(server: FakeOpenAIServer) -> None:
    model = make_model(server.base_url)

    async def main() -> list[str]:
        return [r.text for r in model.generate([user("a"), user("b")], PARAMS)]

    assert asyncio.run(main()) == ["echo: a", "echo: b"]


def test_empty_batch_sends_nothing(server: FakeOpenAIServer) -> None:
    assert make_model(server.base_url).generate([], PARAMS) == []
    assert server.requests == []


def test_retry_after_parsing() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("86400") == 30.0  # capped
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None and parse_retry_after("inf") is None  # NaN seconds: an endless sleep


def test_the_key_is_masked_in_the_forms_a_server_echoes_it() -> None:
    key = "sk-a/b+c"
    echoed = 'raw sk-a/b+c, json-escaped "sk-a\\/b+c"'
    assert mask_key(echoed, key) == 'raw ***, json-escaped "***"'
    assert mask_key(echoed, None) == echoed


def test_a_key_with_spaces_around_is_trimmed_and_one_no_header_can_carry_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, f" {SECRET}\n")
    with FakeOpenAIServer(require_key=SECRET) as fake:
        make_model(fake.base_url).generate([user("hi")], PARAMS)
    monkeypatch.setenv(KEY_ENV, f"\u201c{SECRET}\u201d")  # pasted with curly quotes
    with pytest.raises(MtsaError, match="characters an HTTP header cannot carry") as error:
        make_model("http://127.0.0.1:9/v1")
    assert SECRET not in str(error.value)


def test_usage_that_is_not_token_counts_is_estimated() -> None:
    with FakeOpenAIServer(usage=[1]) as fake:
        reply = make_model(fake.base_url).generate([user("hi")], PARAMS)[0]
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
