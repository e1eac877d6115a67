"""Bypasses and billing faults found by adversarial testing (issue "Close the
holes"): each test sends what the attacker or the careless client sent and
checks the gateway holds."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import h2.connection
import h2.events
import openai
import pytest

from conftest import anthropic_client, openai_client, wait_for
from test_budgets import key_id, ledger, settled
from test_errors import post
from test_tracing import spans_of

MESSAGES = [{"role": "user", "content": "Say hello"}]
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def provider_requests(stack) -> list[dict]:
    return [r for r in stack.mock("GET", "/__mock/requests") if not r["path"].startswith("/__")]


# 1. Duplicate JSON keys ------------------------------------------------------


@pytest.mark.parametrize("body", [
    # The filter read the last `messages`, a first-key-wins provider the first.
    b'{"model":"gpt-4o","messages":[{"role":"user","content":"key AKIAIOSFODNN7EXAMPLE"}],'
    b'"messages":[{"role":"user","content":"hi"}]}',
    # A key scoped to gpt-4o* passes the check on the last `model`.
    b'{"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}',
    # Any depth, and keys spelled with escapes.
    b'{"model":"gpt-4o","messages":[{"role":"user","content":"AKIAIOSFODNN7EXAMPLE","content":"hi"}]}',
    b'{"model":"gpt-4o","mod\\u0065l":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}',
])
def test_duplicate_json_keys_are_refused(stack, make_key, body):
    key = make_key(models=["gpt-4o*"])
    status, error = post(stack.envoy.base_url, "/v1/chat/completions", body, key)
    assert status == 400, error
    assert error["error"]["type"] == "invalid_request_error"
    assert "duplicate key" in error["error"]["message"]
    assert provider_requests(stack) == []


def test_duplicate_json_keys_are_refused_in_anthropic_format(stack, make_key):
    key = make_key(models=["claude-haiku*"])
    body = (b'{"model":"claude-opus-4-7","max_tokens":5,"messages":[{"role":"user","content":"hi"}],'
            b'"model":"claude-haiku-4-5"}')
    status, error = post(stack.envoy.base_url, "/v1/messages", body, key, {"anthropic-version": "2023-06-01"})
    assert status == 400 and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert provider_requests(stack) == []


# 2. Client-chosen request ids ------------------------------------------------


def test_client_request_id_is_not_the_billing_key(stack, key):
    kid = key_id(stack, key)
    stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": kid, "kind": "requests", "limit": 3,
                                           "period": "daily", "mode": "hard"})
    client = openai_client(stack.envoy.base_url, key)
    passed = 0
    for _ in range(5):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                           extra_headers={"x-request-id": "same"})
            passed += 1
        except openai.RateLimitError:
            pass
        settled(stack, kid, passed)
    assert passed == 3, f"{passed} requests passed a daily budget of 3"
    rows = settled(stack, kid, 3)
    assert len(rows) == 3
    ids = {r["request_id"] for r in rows}
    assert len(ids) == 3 and "same" not in ids


# 3. Usage reports that cannot grow without bound ------------------------------


def test_many_guardrail_events_and_huge_headers_do_not_stop_billing(stack, key):
    kid = key_id(stack, key)
    client = openai_client(stack.envoy.base_url, key)
    emails = " ".join(f"user{i}@example.com" for i in range(40_000))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": emails}])
    (row,) = settled(stack, kid, 1)
    (event,) = [e for e in row["guardrail_events"] if e["kind"] == "email"]
    assert event["count"] == 40_000 and event["direction"] == "input"

    huge_id = "r" * 56_000
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda _: client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": huge_id}), range(96)))
    assert len(answers) == 96
    rows = settled(stack, kid, 97, timeout=20)
    assert len(rows) == 97
    # Later requests are still billed.
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(settled(stack, kid, 98)) == 98
    stats = stack.envoy.stats("tollgate.usage")
    assert not any(v for n, v in stats.items() if n.endswith("reports_dropped"))


def test_a_huge_model_name_is_refused_and_billing_goes_on(stack, key):
    kid = key_id(stack, key)
    body = json.dumps({"model": "gpt-" + "x" * 2_500_000, "messages": MESSAGES}).encode()
    status, error = post(stack.envoy.base_url, "/v1/chat/completions", body, key)
    assert status == 400 and "model" in error["error"]["message"]
    openai_client(stack.envoy.base_url, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(settled(stack, kid, 1)) == 1


# 4. Refused requests are not billed or traced as upstream calls --------------


def test_request_refused_while_the_sidecar_is_down_is_not_billed(stack, key):
    envoy = stack.add_envoy("envoy-refusals", plugin_overrides={"key_cache_ttl_ms": 60_000})
    kid = key_id(stack, key)
    # A token budget whose first lease (an eighth of it) covers small
    # requests but not the 4 MB one, which then needs the sidecar.
    stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": kid, "kind": "tokens", "limit": 4_000_000,
                                           "period": "daily", "mode": "hard"})
    client = openai_client(envoy.base_url, key)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # caches the key and a lease
    settled(stack, kid, 1)
    trace = "5bf92f3577b34da6a3ce929d0e0e4799"
    stack.stop_sidecar()
    try:
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 4_000_000}],
                extra_headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        assert err.value.status_code == 503
    finally:
        stack.start_sidecar()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    rows = settled(stack, kid, 2)
    time.sleep(1)  # anything queued in the worker would have arrived by now
    rows = ledger(stack, kid)
    assert len(rows) == 2, rows
    assert all(r["status"] == 200 and r["cost_usd"] < 0.01 for r in rows)
    spans = [s for s in stack.otlp("GET", "/__otlp/spans") if s["trace_id"] == trace]
    assert spans == [], "a refused request has no chat or upstream span"


# 6. Compute time is not sidecar time -----------------------------------------


def test_large_numeric_prompt_is_answered_not_503(stack, key):
    numbers = " ".join(str(i * 7919 % 1000003) for i in range(560_000))[:4_000_000]
    reply = openai_client(stack.envoy.base_url, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": numbers}], max_tokens=5)
    assert reply.choices[0].message.content


# 7. A body in a few huge chunks gets the JSON 413 -------------------------------


def test_body_in_a_4mb_then_an_8mb_chunk_is_a_json_413(stack, key):
    head = b'{"model":"gpt-4o","messages":[{"role":"user","content":"'
    first = head + b"x" * (4 * 1024 * 1024 - len(head))
    second = b"y" * (8 * 1024 * 1024) + b'"}]}'
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\n"
               f"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", stack.envoy.port), timeout=20) as sock:
        sock.sendall(request)
        try:
            for chunk in (first, second):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer may come before the upload ends
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 20:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"application/json" in head.lower(), head
    start = body.index(b"{")
    assert json.loads(body[start:body.rindex(b"}") + 1])["error"]["code"] == "request_too_large"


# 8. HTTP/2 requests that end in trailers -----------------------------------


def h2_post(port: int, path: str, headers: list, body: bytes, trailers: list) -> tuple[int, bytes]:
    conn = h2.connection.H2Connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, [(":method", "POST"), (":path", path), (":scheme", "http"),
                              (":authority", "gateway"), *headers])
        conn.send_data(1, body)
        conn.send_headers(1, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = 0, b""
        while True:
            raw = sock.recv(65536)
            if not raw:
                break
            for event in conn.receive_data(raw):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, data
            sock.sendall(conn.data_to_send())
    return status, data


def test_http2_request_ending_in_trailers_is_served(stack, key):
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    status, data = h2_post(stack.envoy.port, "/v1/chat/completions",
                           [("authorization", f"Bearer {key}"), ("content-type", "application/json")],
                           body, [("x-checksum", "abc")])
    assert status == 200, data
    assert json.loads(data)["choices"][0]["message"]["content"]
    # The guardrails still see the body that ends in trailers.
    leak = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": AWS_KEY}]}).encode()
    status, data = h2_post(stack.envoy.port, "/v1/chat/completions",
                           [("authorization", f"Bearer {key}"), ("content-type", "application/json")],
                           leak, [("x-checksum", "abc")])
    assert status == 400, data
    assert all(AWS_KEY not in json.dumps(r) for r in provider_requests(stack))
    # ... and a redaction made in the trailers callback reaches the provider.
    pii = json.dumps({"model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]}).encode()
    status, data = h2_post(stack.envoy.port, "/v1/chat/completions",
                           [("authorization", f"Bearer {key}"), ("content-type", "application/json")],
                           pii, [("x-checksum", "abc")])
    assert status == 200, data
    sent = json.dumps(provider_requests(stack)[-1])
    assert "jane.doe@example.com" not in sent and "[EMAIL_1]" in sent


# 10. Output tokens and finish reasons from spaced JSON ---------------------


# (The client that hangs up mid-stream: test_budgets.py,
# test_client_that_leaves_mid_stream_is_charged.)


def test_chat_stream_span_has_finish_reasons(stack, key):
    trace = "6bf92f3577b34da6a3ce929d0e0e4711"
    # The mock writes JSON with spaces (`"finish_reason": "stop"`) and, like
    # many OpenAI-compatible servers, no `"usage": null` in every chunk.
    chunks = list(openai_client(stack.envoy.base_url, key).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True,
        extra_headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01", "x-mock-usage-markers": "omit"}))
    assert chunks[-1].choices[0].finish_reason == "stop" or chunks[-2].choices[0].finish_reason == "stop"
    gateway = next(s for s in spans_of(stack, trace) if s["parent_span_id"] == "00f067aa0ba902b7")
    assert gateway["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]


# 11. Guardrail blocks in traces and usage -----------------------------------


def test_guardrail_block_is_traced_and_recorded_at_no_cost(stack, key):
    kid = key_id(stack, key)
    trace = "7bf92f3577b34da6a3ce929d0e0e4722"
    with pytest.raises(openai.BadRequestError):
        openai_client(stack.envoy.base_url, key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"my key is {AWS_KEY}"}],
            extra_headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01", "x-request-id": "client-7"})
    (row,) = settled(stack, kid, 1)
    assert row["forwarded"] is False and row["status"] == 400
    assert row["cost_usd"] == 0 and row["input_tokens"] == 0 and row["output_tokens"] == 0
    assert [(e["guardrail"], e["action"], e["direction"]) for e in row["guardrail_events"]] == \
        [("secrets", "block", "input")]
    spans_of(stack, trace, count=1)
    time.sleep(0.5)
    spans = [s for s in stack.otlp("GET", "/__otlp/spans") if s["trace_id"] == trace]
    assert len(spans) == 1, "a blocked request has a gateway span and no upstream span"
    a = spans[0]["attributes"]
    assert a["error.type"] == "guardrail_blocked"
    assert any(e.startswith("secrets/") and e.endswith("/input/block") for e in a["tollgate.guardrail.events"])
    assert a["tollgate.request_id"] == row["request_id"]
    assert a["http.request.header.x-request-id"] == ["client-7"]
    assert provider_requests(stack) == []
    # A blocked request spends no request budget.
    stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": kid, "kind": "requests",
                                           "limit": 1, "period": "daily", "mode": "hard"})
    assert openai_client(stack.envoy.base_url, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)


# 12. Trace export keeps up, and counts only what the collector took --------


def test_trace_export_keeps_up_with_load(stack, key):
    envoy = stack.add_envoy("envoy-trace-load", plugin_overrides={
        "tracing": {"max_queue": 512, "max_batch": 128, "flush_interval_ms": 1000}})
    client = openai_client(envoy.base_url, key)
    stack.otlp("POST", "/__otlp/mode", {"mode": "ok"})
    n = 400
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda _: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), range(n)))

    def exported():
        stats = envoy.stats("tollgate.trace")
        done = next((v for k, v in stats.items() if k.endswith("spans_exported")), 0)
        return stats if done >= 2 * n else None

    stats, _ = wait_for(exported, timeout=10, step=0.2)
    stats = stats or envoy.stats("tollgate.trace")
    assert not any(v for k, v in stats.items() if k.endswith("spans_dropped")), stats
    assert next(v for k, v in stats.items() if k.endswith("spans_exported")) == 2 * n


def test_spans_a_dead_collector_never_got_are_not_exported(stack, key):
    envoy = stack.add_envoy("envoy-trace-dead", plugin_overrides={"tracing": {"flush_interval_ms": 100}})
    client = openai_client(envoy.base_url, key)
    stack.otlp("POST", "/__otlp/mode", {"mode": "500"})
    try:
        for _ in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        def failed():
            stats = envoy.stats("tollgate.trace")
            return stats if any(v for k, v in stats.items() if k.endswith("export_failures")) else None

        stats, _ = wait_for(failed, timeout=5)
        assert stats, envoy.stats("tollgate.trace")
        time.sleep(0.5)
        stats = envoy.stats("tollgate.trace")
        assert not any(v for k, v in stats.items() if k.endswith("spans_exported")), stats
        assert next(v for k, v in stats.items() if k.endswith("spans_dropped")) == 10
    finally:
        stack.otlp("POST", "/__otlp/mode", {"mode": "ok"})


# 14. Provider account headers ----------------------------------------------


def test_client_account_headers_do_not_reach_the_provider(stack, key):
    openai_client(stack.envoy.base_url, key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES,
        extra_headers={"openai-organization": "org-attacker", "openai-project": "proj_attacker"})
    (request,) = provider_requests(stack)
    assert "openai-organization" not in request["headers"]
    assert "openai-project" not in request["headers"]


# 15. The queue gauge ---------------------------------------------------------


def test_reports_queued_gauge_returns_to_zero(stack, key):
    kid = key_id(stack, key)
    client = openai_client(stack.envoy.base_url, key)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    settled(stack, kid, 3)

    def empty():
        stats = stack.envoy.stats("reports_queued")
        return stats and all(v == 0 for v in stats.values())

    assert wait_for(empty, timeout=3)[0], stack.envoy.stats("reports_queued")


# 13. The filter cannot start without the sidecar's service token -----------


def test_envoy_refuses_to_start_without_the_service_token(stack):
    with pytest.raises(RuntimeError) as err:
        stack.add_envoy("envoy-no-token", plugin_overrides={"sidecar": {"token_env": "TOLLGATE_NO_SUCH_TOKEN"}})
    assert "TOLLGATE_NO_SUCH_TOKEN" in str(err.value)
    assert "host_env_keys" in str(err.value)
