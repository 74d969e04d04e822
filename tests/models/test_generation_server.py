"""The vLLM generation server of Stage 2, against the project's fake OpenAI-compatible server."""

import pytest
from fake_openai_server import FakeOpenAIServer

from mtsa.errors import MtsaError
from mtsa.models.generation_server import EMBEDDED_HUB_ID, GenerationServer, adapter_name
from mtsa.models.spec import parse_spec


@pytest.fixture
def adapter(tmp_path):
    folder = tmp_path / "iter_1" / "target"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")  # a spec names a local adapter folder
    (folder / "adapter_model.safetensors").write_text("weights")
    return folder


def test_an_adapter_is_loaded_once_and_addressed_by_its_name(adapter):
    with FakeOpenAIServer(model_id="/models/base-7b", lora=True) as fake:
        server = GenerationServer(fake.base_url)
        spec = server.spec_for(parse_spec(f"hf:/models/base-7b+{adapter}"))
        name = adapter_name(str(adapter))
        assert spec == f"openai:{name}@{fake.base_url}" and name.startswith("mtsa-iter_1-target-")
        assert fake.adapters == {name: str(adapter.resolve())}
        assert server.spec_for(parse_spec(f"hf:/models/base-7b+{adapter}")) == spec  # already loaded: kept
        assert server.spec_for(parse_spec("hf:/models/base-7b")) == f"openai:/models/base-7b@{fake.base_url}"


def test_the_base_is_matched_by_hub_id_path_or_folder_name(adapter):
    with FakeOpenAIServer(model_id=EMBEDDED_HUB_ID, lora=True) as fake:
        server = GenerationServer(fake.base_url)
        assert server.serves(parse_spec("embedded"))
        assert server.serves(parse_spec("hf:/data/copies/SmolLM2-135M-Instruct"))  # a local copy of the Hub model
        assert server.spec_for(parse_spec("hf:Qwen/Qwen2.5-7B-Instruct")) is None  # another base: stays local


def test_a_retrained_adapter_gets_a_new_name(adapter):
    first = adapter_name(str(adapter))
    (adapter / "adapter_model.safetensors").write_text("weights of an update redone after a crash")
    assert adapter_name(str(adapter)) != first


def test_a_server_without_runtime_lora_and_an_unreachable_one_are_one_line_errors(adapter):
    with FakeOpenAIServer(model_id="base", lora=False) as fake:
        with pytest.raises(MtsaError, match="--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            GenerationServer(fake.base_url).spec_for(parse_spec(f"hf:base+{adapter}"))
        url = fake.base_url
    with FakeOpenAIServer(model_id="base", lora=True) as fake:  # the server cannot see the run folder
        with pytest.raises(MtsaError, match="cannot read adapter .* under the same path"):
            GenerationServer(fake.base_url).load_adapter("name", adapter / "elsewhere")
    with pytest.raises(MtsaError, match="cannot reach --generation-server"):
        GenerationServer(url).base()
    with pytest.raises(MtsaError, match="http"):
        GenerationServer("localhost:8000/v1")


def test_the_api_key_is_sent_and_never_shown_in_errors(monkeypatch):
    monkeypatch.setenv("MTSA_TEST_SERVER_KEY", "  sk-gen/secret+42\n")  # pasted with spaces and a newline
    with FakeOpenAIServer(model_id="base", require_key="sk-gen/secret+42") as fake:
        assert GenerationServer(fake.base_url, "MTSA_TEST_SERVER_KEY").base()["id"] == "base"
    with FakeOpenAIServer(model_id="base", require_key="another-key") as fake:  # it echoes the key it got
        with pytest.raises(MtsaError, match="HTTP 401") as error:
            GenerationServer(fake.base_url, "MTSA_TEST_SERVER_KEY").base()
    assert "sk-gen" not in str(error.value) and "***" in str(error.value)
    with pytest.raises(MtsaError, match="not a valid URL"):
        GenerationServer("http://[::1/v1")


def test_a_server_whose_model_list_is_not_one_is_a_one_line_error():
    with FakeOpenAIServer(model_id="base") as fake:
        fake.handle = lambda request: (200, {}, ["not", "a", "model", "list"])
        with pytest.raises(MtsaError, match="not an OpenAI model list") as error:
            GenerationServer(fake.base_url).base()
    assert "\n" not in str(error.value)
