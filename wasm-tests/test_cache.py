"""The response cache: an identical request from the same team is answered
from the sidecar with no provider call, in the client's API, streamed or
not, through the official SDKs' stream helpers; any field that changes the
answer, another team or the client's opt-out goes to the provider; a hit is
in the ledger (tokens saved, no cost), the trace and the stats; a sidecar
that is down only means plain forwarding.

The shipped config caches every model for keys of the teams `faq-bot` and
`support-bot`."""

import json
import time
import uuid

import pytest

from conftest import anthropic_client, openai_client, wait_for
from stack import stop_process
from test_budgets import settled
from test_faults import raw_post

HITS = "wasmcustom.tollgate.cache.hits"
MISSES = "wasmcustom.tollgate.cache.misses"
# The root context sends a store on its next tick (100 ms), then lists the key.
STORED_S = 0.5


@pytest.fixture
def faq(stack):
    """A key of the cached team `faq-bot`: (key, key id)."""
    made = stack.admin("POST", "/admin/keys", {"team": "faq-bot"})
    return made["key"], made["id"]


def provider_calls(stack) -> int:
    return len([r for r in stack.mock("GET", "/__mock/requests") if not r["path"].startswith("/__")])


def unique(text: str = "") -> str:
    return f"{text} {uuid.uuid4().hex}".strip()


def chat(base_url: str, key: str, body: dict, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """A raw Chat Completions call: (status, headers, body)."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"{base_url}/v1/chat/completions", data=json.dumps(body).encode(),
                                 method="POST", headers={"authorization": f"Bearer {key}",
                                                         "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def twice(stack, call):
    """`call` twice, the answer stored in between: both results and the
    provider calls each made."""
    before = provider_calls(stack)
    first = call()
    time.sleep(STORED_S)
    middle = provider_calls(stack)
    second = call()
    return first, second, middle - before, provider_calls(stack) - middle


CALLS = {
    "chat": lambda c, model, text: c.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]).choices[0].message.content,
    "chat-stream": lambda c, model, text: _chat_stream(c, model, text),
    "responses": lambda c, model, text: c.responses.create(model=model, input=text).output_text,
    "responses-stream": lambda c, model, text: _responses_stream(c, model, text),
    "messages": lambda c, model, text: c.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": text}]).content[0].text,
    "messages-stream": lambda c, model, text: _messages_stream(c, model, text),
}


def _chat_stream(client, model, text):
    with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": text}]) as s:
        return s.get_final_completion().choices[0].message.content


def _responses_stream(client, model, text):
    with client.responses.stream(model=model, input=text) as s:
        return s.get_final_response().output_text


def _messages_stream(client, model, text):
    with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": text}]) as s:
        return s.get_final_message().content[0].text


@pytest.mark.parametrize("shape", list(CALLS))
@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5"])
def test_a_repeated_request_is_a_hit_in_each_api_streamed_or_not(stack, faq, shape, model):
    key, _ = faq
    base = stack.envoy.base_url
    client = anthropic_client(base, key) if shape.startswith("messages") else openai_client(base, key)
    text = unique("echo: the cached answer")
    first, second, calls_first, calls_second = twice(stack, lambda: CALLS[shape](client, model, text))
    assert (calls_first, calls_second) == (1, 0), "the second answer came from the cache"
    assert first == second and "the cached answer" in second


def test_the_answer_says_hit_or_miss_and_every_field_matters(stack, faq):
    key, _ = faq
    base = stack.envoy.base_url
    text = unique("echo: fields")
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "be brief"},
                                              {"role": "user", "content": text}],
            "temperature": 0.5, "max_tokens": 50}
    status, headers, answer = chat(base, key, body)
    assert status == 200 and headers["x-tollgate-cache"] == "miss"
    time.sleep(STORED_S)
    # The same request, keys in another order and spaced out: a hit.
    raw = ('{ "max_tokens": 50, "temperature": 0.50, "messages": [ {"role":"system","content":"be brief"}, '
           '{"content": ' + json.dumps(text) + ', "role": "user"} ], "model": "gpt-4o" }')
    status, hit_body = raw_post(base, "/v1/chat/completions", raw.encode(),
                                {"authorization": f"Bearer {key}", "content-type": "application/json"})
    assert status == 200 and json.loads(hit_body) == json.loads(answer)
    status, headers, _ = chat(base, key, body)
    assert headers["x-tollgate-cache"] == "hit"

    changes = {
        "system prompt": {"messages": [{"role": "system", "content": "be long"}, body["messages"][1]]},
        "earlier message": {"messages": [{"role": "user", "content": "before"},
                                         {"role": "assistant", "content": "ok"}, *body["messages"]]},
        "last message": {"messages": [body["messages"][0], {"role": "user", "content": text + "!"}]},
        "tools": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        "tool choice": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                        "tool_choice": "none"},
        "response format": {"response_format": {"type": "json_object"}},
        "temperature": {"temperature": 0.6},
        "top_p": {"top_p": 0.9},
        "max tokens": {"max_tokens": 51},
        "seed": {"seed": 7},
        "stop": {"stop": ["x"]},
        "model": {"model": "gpt-4o-mini"},
    }
    for what, change in changes.items():
        before = provider_calls(stack)
        status, headers, _ = chat(base, key, {**body, **change})
        assert status == 200, what
        assert headers["x-tollgate-cache"] == "miss", what
        assert provider_calls(stack) == before + 1, f"{what}: must reach the provider"


def test_no_hit_across_teams_but_within_one(stack, faq):
    key_a, _ = faq
    key_a2 = stack.admin("POST", "/admin/keys", {"team": "faq-bot"})["key"]
    key_b = stack.admin("POST", "/admin/keys", {"team": "support-bot"})["key"]
    uncached = stack.admin("POST", "/admin/keys", {"team": "e2e"})["key"]
    base = stack.envoy.base_url
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": unique("echo: tenants")}]}
    assert chat(base, key_a, body)[1]["x-tollgate-cache"] == "miss"
    time.sleep(STORED_S)
    before = provider_calls(stack)
    assert chat(base, key_b, body)[1]["x-tollgate-cache"] == "miss", "another team never sees it"
    assert provider_calls(stack) == before + 1
    assert chat(base, key_a2, body)[1]["x-tollgate-cache"] == "hit", "a key of the same team does"
    headers = chat(base, uncached, body)[1]
    assert "x-tollgate-cache" not in headers, "no rule covers team e2e"
    assert provider_calls(stack) == before + 2


def test_the_client_can_opt_out(stack, faq):
    key, _ = faq
    base = stack.envoy.base_url
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": unique("echo: opt out")}]}
    assert chat(base, key, body, {"cache-control": "no-store"})[1]["x-tollgate-cache"] == "bypass"
    time.sleep(STORED_S)
    assert chat(base, key, body)[1]["x-tollgate-cache"] == "miss", "no-store stored nothing"
    time.sleep(STORED_S)
    before = provider_calls(stack)
    assert chat(base, key, body, {"cache-control": "no-cache"})[1]["x-tollgate-cache"] == "miss"
    assert chat(base, key, body, {"cache-control": "no-store"})[1]["x-tollgate-cache"] == "bypass"
    assert provider_calls(stack) == before + 2
    assert chat(base, key, body)[1]["x-tollgate-cache"] == "hit"


def test_a_hit_is_in_the_ledger_the_trace_and_the_stats(stack, faq):
    key, kid = faq
    base = stack.envoy.base_url
    hits_before = stack.envoy.stats(HITS).get(HITS, 0)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": unique("echo: ledger")}]}
    trace = uuid.uuid4().hex
    _, _, first = chat(base, key, body)
    time.sleep(STORED_S)
    status, headers, second = chat(base, key, body, {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert headers["x-tollgate-cache"] == "hit" and second == first
    usage = json.loads(first)["usage"]

    found = settled(stack, kid, 2, timeout=5)
    assert len(found) == 2, "both requests are in the ledger"
    hit = next(r for r in found if r["cache_hit"])
    miss = next(r for r in found if not r["cache_hit"])
    assert (hit["forwarded"], hit["cost_usd"], hit["status"]) == (False, 0.0, 200)
    assert (hit["input_tokens"], hit["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert miss["forwarded"] and miss["cost_usd"] > 0

    def span():
        spans = [s for s in stack.otlp("GET", "/__otlp/spans") if s["trace_id"] == trace]
        return spans or None
    spans, _ = wait_for(span, timeout=5)
    assert spans and len(spans) == 1, "a hit has no upstream span"
    assert spans[0]["attributes"]["tollgate.cache"] == "hit"

    hits, _ = wait_for(lambda: stack.envoy.stats(HITS).get(HITS, 0) > hits_before, timeout=3)
    assert hits
    assert stack.envoy.stats(MISSES).get(MISSES, 0) >= 1


@pytest.fixture(scope="module")
def output_redacted(stack):
    """An Envoy whose output guardrails redact PII, caching team faq-bot."""
    return stack.add_envoy("envoy-cache-redact", plugin_overrides={
        "key_cache_ttl_ms": 60000,
        "guardrails": {"pii": {"input": "monitor", "output": "redact"}}})


def test_a_redacted_answer_is_stored_as_the_client_saw_it(stack, output_redacted, faq):
    key, _ = faq
    client = openai_client(output_redacted.base_url, key)
    text = unique("echo: write to jane.doe@example.com")
    first, second, calls_first, calls_second = twice(stack, lambda: CALLS["chat-stream"](client, "gpt-4o", text))
    assert (calls_first, calls_second) == (1, 0)
    assert "jane.doe@example.com" not in second and first == second


def test_a_sidecar_that_is_down_means_plain_forwarding(stack, faq):
    key, _ = faq
    port = stack.add_sidecar("sidecar-cache-down")
    proc = stack.extra_sidecars[-1]
    envoy = stack.add_envoy("envoy-cache-down", sidecar_port=port, plugin_overrides={
        "key_cache_ttl_ms": 60000, "budgets": {"failure_mode": "open"}})
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": unique("echo: down")}]}
    assert chat(envoy.base_url, key, body)[1]["x-tollgate-cache"] == "miss"
    time.sleep(STORED_S)
    assert chat(envoy.base_url, key, body)[1]["x-tollgate-cache"] == "hit"
    stop_process(proc)
    before = provider_calls(stack)
    started = time.monotonic()
    status, headers, answer = chat(envoy.base_url, key, body)
    assert status == 200 and headers["x-tollgate-cache"] == "miss"
    assert "down" in json.loads(answer)["choices"][0]["message"]["content"]
    assert provider_calls(stack) == before + 1
    assert time.monotonic() - started < 2
