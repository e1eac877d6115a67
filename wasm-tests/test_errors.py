"""Bad input and broken dependencies: errors in the client's format, nothing passes unchecked."""

import json
import urllib.error
import urllib.request

import openai
import pytest

from conftest import CACHE_TTL_MS, openai_client, wait_for
from stack import Envoy

MESSAGES = [{"role": "user", "content": "hi"}]


def post(base_url, path, body: bytes, key, headers=None):
    req = urllib.request.Request(f"{base_url}{path}", data=body, method="POST", headers={
        "authorization": f"Bearer {key}", "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'{"messages": []}', b'{"model": 42}',
                                  b'{"model": "gpt-4o", "x": "\xff\xfe"}', b"", b"[" * 5000])
def test_malformed_body_is_400_openai(stack, key, body):
    status, error = post(stack.envoy.base_url, "/v1/chat/completions", body, key)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert stack.mock("GET", "/__mock/requests") == []


def test_malformed_body_is_400_anthropic(stack, key):
    status, error = post(stack.envoy.base_url, "/v1/messages", b'{"model": ', key,
                         {"anthropic-version": "2023-06-01"})
    assert status == 400
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404(stack, key):
    with pytest.raises(openai.NotFoundError) as err:
        openai_client(stack.envoy.base_url, key).chat.completions.create(model="mistral-large", messages=MESSAGES)
    assert "mistral-large" in str(err.value)


def test_unknown_path_is_404(stack, key):
    status, error = post(stack.envoy.base_url, "/v1/embeddings", b"{}", key)
    assert status == 404 and "unknown_url" == error["error"]["code"]


def test_body_over_limit_is_413(stack, key):
    big = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 5_000_000}]}).encode()
    status, error = post(stack.envoy.base_url, "/v1/chat/completions", big, key)
    assert status == 413 and error["error"]["code"] == "request_too_large"

    def chunks():  # no content-length: the limit is enforced while buffering
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    req = urllib.request.Request(f"{stack.envoy.base_url}/v1/chat/completions", data=chunks(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                                          "transfer-encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 413
    assert json.loads(err.value.read())["error"]["code"] == "request_too_large"
    assert stack.mock("GET", "/__mock/requests") == []


@pytest.fixture
def sidecar_stopped(stack):
    stack.stop_sidecar()
    yield
    stack.start_sidecar()


def test_sidecar_down_fail_closed_and_open(stack, fail_open, key, sidecar_stopped):
    # The key was never used, so no Envoy has it cached: the callout must fail.
    status, error = post(stack.envoy.base_url, "/v1/chat/completions",
                         json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode(), key)
    assert status == 503 and error["error"]["code"] == "key_service_unavailable"
    assert stack.mock("GET", "/__mock/requests") == []
    reply = openai_client(fail_open.base_url, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content
    logged, _ = wait_for(lambda: "failing open" in fail_open.log_path.read_text(), timeout=3)
    assert logged, "fail-open was not logged"


def test_sidecar_restart_recovers(stack, key):
    stack.stop_sidecar()
    stack.start_sidecar()
    assert openai_client(stack.envoy.base_url, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_provider_error_passes_through_in_format(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-mock-fault": "429"})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-mock-fault": "500"})


def test_invalid_config_fails_at_startup(stack):
    bad = {"key_cache_ttl_ms": CACHE_TTL_MS, "providers": [{"name": "x", "kind": "bedrock", "cluster": "c"}]}
    envoy = Envoy(stack, "envoy-bad-config", plugin_overrides=bad)
    with pytest.raises((RuntimeError, TimeoutError)):
        envoy.start(timeout=8)
    envoy.stop()
    assert "unknown variant `bedrock`" in envoy.log_path.read_text()
