"""Traces: every forwarded request becomes OTLP spans with the GenAI
conventions, decoded by a receiver using the official protobuf schema; a
dead, failing or hung collector never affects responses."""

import json
import statistics
import time

import openai
import pytest

from conftest import CACHE_TTL_MS, anthropic_client, openai_client, wait_for
from stack import free_port

MESSAGES = [{"role": "user", "content": "Say hello"}]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def spans_of(stack, trace_id: str, count: int = 2) -> list[dict]:
    def found():
        spans = [s for s in stack.otlp("GET", "/__otlp/spans") if s["trace_id"] == trace_id]
        return spans if len(spans) >= count else None
    spans, _ = wait_for(found, timeout=5)
    assert spans, f"no spans for trace {trace_id}; receiver errors: {stack.otlp('GET', '/__otlp/errors')}"
    return spans


def test_chat_span_attributes_match_usage(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=50, temperature=0.2,
        extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    spans = spans_of(stack, CLIENT_TRACE)
    gateway = next(s for s in spans if s["parent_span_id"] == CLIENT_SPAN)
    upstream = next(s for s in spans if s["parent_span_id"] == gateway["span_id"])
    a = gateway["attributes"]
    assert gateway["name"] == "chat gpt-4o"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == reply.model
    assert a["gen_ai.response.id"] == reply.id
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.temperature"] == pytest.approx(0.2)
    assert a["gen_ai.request.stream"] is False
    assert a["tollgate.key_id"].startswith("key_")
    assert a["tollgate.team"] == "e2e"
    assert "error.type" not in a
    assert "gen_ai.input.messages" not in a, "content capture is off by default"
    assert gateway["resource"]["service.name"] == "tollgate"
    assert upstream["kind"] == 3 and gateway["kind"] == 2
    (provider_request,) = [r for r in stack.mock("GET", "/__mock/requests") if r["path"] == "/v1/chat/completions"]
    assert provider_request["headers"]["traceparent"] == f"00-{CLIENT_TRACE}-{upstream['span_id']}-01"
    assert stack.otlp("GET", "/__otlp/errors") == []


def test_stream_span(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    trace = "0af7651916cd43dd8448eb211c80319c"
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES,
                                extra_headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"}) as stream:
        final = stream.get_final_message()
    gateway = next(s for s in spans_of(stack, trace) if s["parent_span_id"] == "b7ad6b7169203331")
    a = gateway["attributes"]
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert a["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert a["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert a["gen_ai.response.id"] == final.id
    assert 0 <= a["gen_ai.response.time_to_first_chunk"] < 5


def test_new_trace_and_error_type(stack, key):
    stack.otlp("DELETE", "/__otlp/spans")
    with pytest.raises(openai.RateLimitError):
        openai_client(stack.envoy.base_url, key).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-fault": "429"})

    def error_span():
        return [s for s in stack.otlp("GET", "/__otlp/spans") if s["attributes"].get("error.type") == "429"]
    spans, _ = wait_for(error_span, timeout=5)
    assert spans and spans[0]["status_code"] == 2
    assert spans[0]["parent_span_id"] == "", "a request without traceparent starts a trace"


def latencies(base_url: str, key: str, n: int) -> list[float]:
    client = openai_client(base_url, key)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
        out.append(time.perf_counter() - start)
    return out


@pytest.fixture
def small_queue_envoy(stack):
    """An Envoy whose exporter keeps at most 10 spans, flushing often."""
    return stack.add_envoy("envoy-small-queue", plugin_overrides={
        "key_cache_ttl_ms": CACHE_TTL_MS,
        "tracing": {"flush_interval_ms": 50, "max_queue": 10, "max_batch": 5, "timeout_ms": 3000}})


@pytest.fixture
def collector_mode(stack):
    def set_mode(mode: str):
        stack.otlp("POST", "/__otlp/mode", {"mode": mode})
    yield set_mode
    set_mode("ok")


def test_collector_failing_or_hung_does_not_affect_responses(stack, key, small_queue_envoy, collector_mode):
    baseline = statistics.median(latencies(small_queue_envoy.base_url, key, 30))
    for mode in ["500", "hang"]:
        collector_mode(mode)
        times = latencies(small_queue_envoy.base_url, key, 60)
        assert statistics.median(times) < baseline + 0.01, (mode, baseline, statistics.median(times))
        stats = small_queue_envoy.stats("tollgate.trace")
        queued = next(v for n, v in stats.items() if n.endswith("tollgate.trace.spans_queued"))
        assert queued <= 10, "the export queue is bounded"
    dropped = next(v for n, v in small_queue_envoy.stats("tollgate.trace").items()
                   if n.endswith("tollgate.trace.spans_dropped"))
    assert dropped > 0, "a hung collector makes the filter drop spans, not pile them up"


def test_dead_collector_does_not_affect_responses(stack, key):
    dead = stack.add_envoy("envoy-dead-collector", otlp_port=free_port(),
                           plugin_overrides={"key_cache_ttl_ms": CACHE_TTL_MS, "tracing": {"flush_interval_ms": 50}})
    times = latencies(dead.base_url, key, 30)
    assert statistics.median(times) < 0.05
    failures, _ = wait_for(lambda: next(v for n, v in dead.stats("tollgate.trace").items()
                                        if n.endswith("tollgate.trace.export_failures")), timeout=3)
    assert failures > 0


def test_content_capture_is_opt_in(stack, key):
    capturing = stack.add_envoy("envoy-capture", plugin_overrides={
        "key_cache_ttl_ms": CACHE_TTL_MS, "tracing": {"flush_interval_ms": 100, "capture_content": True}})
    trace = "5bf92f3577b34da6a3ce929d0e0e4736"
    reply = openai_client(capturing.base_url, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo: the capture works"}],
        extra_headers={"traceparent": f"00-{trace}-{CLIENT_SPAN}-01"})
    gateway = next(s for s in spans_of(stack, trace) if s["parent_span_id"] == CLIENT_SPAN)
    inputs = json.loads(gateway["attributes"]["gen_ai.input.messages"])
    assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "echo: the capture works"}]}]
    outputs = json.loads(gateway["attributes"]["gen_ai.output.messages"])
    assert outputs[0]["parts"][0]["content"] == reply.choices[0].message.content == "the capture works"
    stream_trace = "6bf92f3577b34da6a3ce929d0e0e4736"
    with anthropic_client(capturing.base_url, key).messages.stream(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "echo: streamed words"}],
            extra_headers={"traceparent": f"00-{stream_trace}-{CLIENT_SPAN}-01"}) as stream:
        final = stream.get_final_message()
    gateway = next(s for s in spans_of(stack, stream_trace) if s["parent_span_id"] == CLIENT_SPAN)
    outputs = json.loads(gateway["attributes"]["gen_ai.output.messages"])
    assert outputs[0]["parts"][0]["content"] == final.content[0].text == "streamed words"
    assert outputs[0]["finish_reason"] == "end_turn"
