"""Requests that should reach a provider: both SDKs, streaming and not,
model aliases, Azure deployment and Responses paths, provider settings, and
the local model listing."""

import json
import time

import openai
import pytest

from conftest import anthropic_client, openai_client, wait_for

MESSAGES = [{"role": "user", "content": "Say hello"}]


def provider_requests(stack, path_part: str) -> list[dict]:
    return [r for r in stack.mock("GET", "/__mock/requests") if path_part in r["path"]]


def assert_no_gateway_key(request: dict, key: str):
    for name, value in request["headers"].items():
        assert key not in value, f"gateway key leaked upstream in {name}"


def test_chat_completion(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello! This is the mock gpt-4o-mini reply."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    (upstream,) = provider_requests(stack, "/v1/chat/completions")
    assert upstream["headers"]["authorization"] == "Bearer mock-openai-key"
    assert upstream["body"]["model"] == "gpt-4o-mini"
    assert_no_gateway_key(upstream, key)


def test_chat_completion_stream(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! This is the mock gpt-4o reply."
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stream_is_not_buffered(stack, key):
    """Chunks reach the client as the provider sends them."""
    client = openai_client(stack.envoy.base_url, key)
    start = time.monotonic()
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                            extra_headers={"x-mock-chunk-delay-ms": "150"})
    arrivals = [time.monotonic() - start for _ in stream]
    assert len(arrivals) >= 5
    # The whole stream takes >= 0.6 s; the first chunk must not wait for it.
    assert arrivals[-1] - arrivals[0] > 0.5, arrivals


def test_anthropic_message(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
    assert message.content[0].text == "Hello! This is the mock claude-haiku-4-5 reply."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    (upstream,) = provider_requests(stack, "/v1/messages")
    assert upstream["headers"]["x-api-key"] == "mock-anthropic-key"
    assert "authorization" not in upstream["headers"]
    assert_no_gateway_key(upstream, key)


def test_anthropic_stream(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) > 2
    assert "".join(deltas) == final.content[0].text == "Hello! This is the mock claude-sonnet-4-6 reply."
    assert final.usage.output_tokens > 0


def test_alias_maps_model(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(model="fast", messages=MESSAGES)
    assert reply.model == "gpt-5.4-mini"
    (upstream,) = provider_requests(stack, "/v1/chat/completions")
    assert upstream["body"]["model"] == "gpt-5.4-mini"
    assert upstream["body"]["messages"] == MESSAGES


def test_azure_deployment_path_and_env_auth(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(model="azure-gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content
    (upstream,) = provider_requests(stack, "/openai/deployments/")
    assert upstream["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert upstream["query"] == {"api-version": "2024-10-21"}
    assert upstream["headers"]["api-key"] == "mock-azure-key"
    assert_no_gateway_key(upstream, key)


def test_responses_api_passes_through(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    response = client.responses.create(model="gpt-4o", input="Say hello")
    assert response.output_text == "Hello! This is the mock gpt-4o reply."
    assert response.usage.input_tokens > 0


def test_models_listing_follows_key_scope(stack, make_key):
    everything = openai_client(stack.envoy.base_url, make_key())
    ids = [m.id for m in everything.models.list()]
    assert {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-6", "fast"} <= set(ids)
    assert not any("*" in i for i in ids)
    claude_only = make_key(models=["claude-*"])
    ids = [m.id for m in openai_client(stack.envoy.base_url, claude_only).models.list()]
    assert ids and all(i.startswith("claude-") for i in ids)
    listed = anthropic_client(stack.envoy.base_url, claude_only).models.list()
    assert [m.id for m in listed.data] == ids
    assert provider_requests(stack, "/v1/models") == [], "listing is answered by the gateway"


# Envoy's Prometheus output drops the wasm filter's custom stat namespace
# (tollgate_*); the native module's stats keep it (envoy_wasmcustom_tollgate_*).
PROMETHEUS_PREFIXES = ("tollgate_", "envoy_wasmcustom_tollgate_")


def metric(name: str, **labels) -> tuple:
    """A Prometheus series as `prometheus` keys it: name and label set, in any order."""
    return name, frozenset(f'{k}="{v}"' for k, v in labels.items())


def prometheus(stack) -> dict[tuple, float]:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.envoy.admin_port}/stats/prometheus", timeout=5) as r:
        lines = r.read().decode().splitlines()
    out = {}
    for line in lines:
        prefix = next((p for p in PROMETHEUS_PREFIXES if line.startswith(p)), None)
        if prefix:
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            out[("tollgate_" + name[len(prefix):], frozenset(labels.rstrip("}").split(",")) - {""})] = float(value)
    return out


def test_usage_and_requests_in_prometheus_stats(stack, key):
    requests = metric("tollgate_requests", api="chat_completions", provider="openai", model="gpt-4o", status="2xx")
    output = metric("tollgate_tokens", provider="openai", model="gpt-4o", direction="output")
    # Counters reach Envoy on the next tick (100 ms): an earlier test's
    # tokens for gpt-4o must land before the baseline, not after it.
    time.sleep(0.3)
    before = prometheus(stack)
    reply = openai_client(stack.envoy.base_url, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        openai_client(stack.envoy.base_url, key).chat.completions.create(model="no-such-model", messages=MESSAGES)

    rejected = metric("tollgate_rejected", api="chat_completions", reason="model_not_found")

    # Counters reach Envoy on the worker's next tick.
    def counted():
        now = prometheus(stack)
        grew = all(now.get(name, 0) - before.get(name, 0) == 1 for name in (requests, rejected))
        return now if grew else None
    after, _ = wait_for(counted, timeout=3)
    assert after, "request or rejection not counted"
    assert after[output] - before.get(output, 0) == reply.usage.completion_tokens

    # Upstream time is a histogram: it reaches the admin output with Envoy's
    # stats flush (every 5 s), earlier tests' requests to openai maybe too.
    upstream_ms = metric("tollgate_upstream_ms_count", provider="openai")

    def timed():
        now = prometheus(stack)
        return now if now.get(upstream_ms, 0) > before.get(upstream_ms, 0) else None
    assert wait_for(timed, timeout=8)[0], "upstream time not recorded"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_provider_never_sees_gateway_key(stack, key, path):
    import urllib.request
    body = {"model": "gpt-4o" if "chat" in path else "claude-haiku-4-5", "max_tokens": 10, "messages": MESSAGES}
    req = urllib.request.Request(f"{stack.envoy.base_url}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "x-api-key": key,
                                          "api-key": key, "anthropic-version": "2023-06-01",
                                          "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    (upstream,) = provider_requests(stack, path)
    assert_no_gateway_key(upstream, key)


def test_azure_sdk_inbound(stack, key):
    """The AzureOpenAI SDK (deployment paths, `api-key` header) works against any provider."""
    client = openai.AzureOpenAI(azure_endpoint=stack.envoy.base_url, api_key=key, api_version="2024-10-21",
                                max_retries=0, timeout=20)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello! This is the mock gpt-4o-mini reply."
    (upstream,) = provider_requests(stack, "/v1/chat/completions")
    assert upstream["query"] == {}
    assert upstream["headers"]["authorization"] == "Bearer mock-openai-key"
    assert "api-key" not in upstream["headers"]
    assert_no_gateway_key(upstream, key)


def azure_client(base_url: str, key: str, api_version: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=base_url, api_key=key, api_version=api_version,
                              max_retries=0, timeout=20)


def test_azure_sdk_responses(stack, key):
    """AzureOpenAI's responses.create (`/openai/responses?api-version=...`) reaches
    the azure provider's Responses API (`responses_api_version: v1` in gateway.yaml),
    the deployment named in the body, and any other provider too."""
    client = azure_client(stack.envoy.base_url, key, "2025-04-01-preview")
    response = client.responses.create(model="azure-gpt-4o", input="Say hello")
    assert response.output_text == "Hello! This is the mock gpt-4o reply."
    assert response.usage.output_tokens > 0
    events = list(client.responses.create(model="azure-gpt-4o", input="Say hello", stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello! This is the mock gpt-4o reply."
    assert events[-1].type == "response.completed" and events[-1].response.usage.output_tokens > 0
    upstream = provider_requests(stack, "/openai/")
    assert [(r["path"], r["query"], r["body"]["model"], r["body"].get("stream")) for r in upstream] == [
        ("/openai/v1/responses", {}, "gpt-4o", None), ("/openai/v1/responses", {}, "gpt-4o", True)]
    for r in upstream:
        assert r["headers"]["api-key"] == "mock-azure-key"
        assert_no_gateway_key(r, key)
    stack.mock("DELETE", "/__mock/requests")
    response = client.responses.create(model="gpt-4o", input="Say hello")
    assert response.output_text == "Hello! This is the mock gpt-4o reply."
    (upstream,) = provider_requests(stack, "/responses")
    assert (upstream["path"], upstream["query"]) == ("/v1/responses", {})
    assert upstream["headers"]["authorization"] == "Bearer mock-openai-key"


def test_openai_compatible_gets_max_tokens_by_default(stack, key):
    anthropic_client(stack.envoy.base_url, key).messages.create(
        model="local-llama", max_tokens=42, messages=MESSAGES)
    (upstream,) = provider_requests(stack, "/v1/chat/completions")
    assert upstream["body"]["max_tokens"] == 42
    assert "max_completion_tokens" not in upstream["body"]


@pytest.fixture(scope="module")
def configured(stack):
    """An Envoy whose azure provider takes Responses on a dated version and
    whose openai-compatible server reads `max_completion_tokens`."""
    return stack.add_envoy("envoy-provider-settings", plugin_overrides={
        "providers": [
            {"name": "azure", "kind": "azure", "cluster": "provider_azure", "api_version": "2024-10-21",
             "responses_api_version": "2025-04-01-preview", "auth": {"type": "env", "var": "AZURE_OPENAI_API_KEY"}},
            {"name": "local", "kind": "openai-compatible", "cluster": "provider_local",
             "max_tokens_field": "max_completion_tokens", "auth": {"type": "env", "var": "LOCAL_LLM_API_KEY"}}],
        "models": [{"name": "azure-gpt-4o", "provider": "azure", "deployment": "gpt-4o"},
                   {"name": "local-*", "provider": "local"}],
        # Its providers carry no regions: no team can be pinned.
        "residency": None})


def test_azure_responses_on_a_dated_api_version(stack, configured, key):
    client = azure_client(configured.base_url, key, "2025-04-01-preview")
    with client.responses.stream(model="azure-gpt-4o", input="Say hello") as s:
        final = s.get_final_response()
    assert final.output_text == "Hello! This is the mock gpt-4o reply."
    (upstream,) = provider_requests(stack, "/openai/")
    assert (upstream["path"], upstream["query"], upstream["body"]["model"]) == (
        "/openai/responses", {"api-version": "2025-04-01-preview"}, "gpt-4o")
    # Chat clients still use the deployment path and its own api_version.
    stack.mock("DELETE", "/__mock/requests")
    openai_client(configured.base_url, key).chat.completions.create(model="azure-gpt-4o", messages=MESSAGES)
    (upstream,) = provider_requests(stack, "/openai/")
    assert (upstream["path"], upstream["query"]) == (
        "/openai/deployments/gpt-4o/chat/completions", {"api-version": "2024-10-21"})


def test_openai_compatible_gets_the_configured_max_tokens_field(stack, configured, key):
    anthropic_client(configured.base_url, key).messages.create(
        model="local-llama", max_tokens=42, messages=MESSAGES)
    (upstream,) = provider_requests(stack, "/v1/chat/completions")
    assert upstream["body"]["max_completion_tokens"] == 42
    assert "max_tokens" not in upstream["body"]


def test_a_two_stage_config_without_the_chain_field_still_routes(stack, key):
    """A two-stage gateway.yaml from before "chain" existed (the default is
    the single stage): the route stage in the same VM tells the filter which
    chain it is in, so requests are routed instead of hanging."""
    old = stack.add_envoy("old-two-stage", chain="two_stage", plugin_overrides={"chain": "single_stage"})
    reply = openai_client(old.base_url, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
