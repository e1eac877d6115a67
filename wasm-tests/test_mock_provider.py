"""Tests for mock_provider: raw HTTP behaviour, and that the official SDKs parse it."""

from __future__ import annotations

import http.client
import json
import math
import socket
import time

import anthropic
import openai
import pytest

import mock_provider

OPENAI_AUTH = {"Authorization": "Bearer mock-openai-key"}
ANTHROPIC_AUTH = {"x-api-key": "mock-anthropic-key", "anthropic-version": "2023-06-01"}
AZURE_AUTH = {"api-key": "mock-azure-key"}
AZURE_CHAT = "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
HI = [{"role": "user", "content": "Hi"}]
DEFAULT_REPLY = "Hello! This is the mock gpt-4o-mini reply."
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]


@pytest.fixture(scope="module")
def port():
    server, bound = mock_provider.start(0)
    yield bound
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def clear_mock(port):
    """Overrides conftest's clear_mock, which needs the whole Envoy stack; this module needs only the mock."""
    call(port, "DELETE", "/__mock/requests")
    call(port, "DELETE", "/__mock/faults")


def call(port, method, path, body=None, headers=None, raw=None):
    """One request on a fresh connection: (status, lowercased headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    result = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return result


def call_json(port, method, path, body=None, headers=None):
    status, _, data = call(port, method, path, body, headers)
    return status, json.loads(data)


def sse(data: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each event of an SSE body."""
    events = []
    for block in data.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        if fields:
            events.append((fields.get("event"), fields["data"]))
    return events


def recorded(port):
    return call_json(port, "GET", "/__mock/requests")[1]


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


# ---------------------------------------------------------------- raw HTTP


def test_health_and_unknown_path(port):
    assert call_json(port, "GET", "/__mock/health") == (200, {"status": "ok"})
    status, body = call_json(port, "POST", "/v1/nope", {}, OPENAI_AUTH)
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error"
    assert "Invalid URL (POST /v1/nope)" in body["error"]["message"]


def test_chat_completion_text_and_usage(port):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    status, headers, data = call(port, "POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": messages}, OPENAI_AUTH)
    body = json.loads(data)
    assert status == 200 and headers["content-length"] == str(len(data))
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-mock-")
    assert body["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert body["choices"][0]["finish_reason"] == "stop"
    # ceil((14 + 2) chars / 4) + 4 per message; ceil(42 / 4)
    assert body["usage"]["prompt_tokens"] == 12 and body["usage"]["completion_tokens"] == 11
    assert body["usage"]["total_tokens"] == 23
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_chat_stream_usage_chunk_only_when_asked(port):
    request = {"model": "gpt-4o-mini", "messages": HI, "stream": True}
    _, headers, data = call(port, "POST", "/v1/chat/completions", request, OPENAI_AUTH)
    events = sse(data)
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == DEFAULT_REPLY
    assert len(chunks) > 4 and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    request["stream_options"] = {"include_usage": True}
    _, _, data = call(port, "POST", "/v1/chat/completions", request, OPENAI_AUTH)
    last = json.loads(sse(data)[-2][1])
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 5 and last["usage"]["completion_tokens"] == 11


def test_stream_piece_lengths_are_chosen_by_header(port):
    request = {"model": "gpt-4o-mini", "messages": HI, "stream": True}
    _, _, data = call(port, "POST", "/v1/chat/completions", request, {**OPENAI_AUTH, "x-mock-piece-chars": "1,3"})
    deltas = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in sse(data)[:-1]]
    deltas = [d for d in deltas if d]
    assert "".join(deltas) == DEFAULT_REPLY
    assert [len(d) for d in deltas[:4]] == [1, 3, 1, 3]


def test_stream_events_are_single_chunks_on_a_kept_alive_connection(port):
    body = json.dumps({"model": "m", "messages": HI, "stream": True}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer mock-openai-key\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):  # the second request reuses the connection
            sock.sendall(head + body)
            assert reader.readline().startswith(b"HTTP/1.1 200")
            while reader.readline() != b"\r\n":
                pass
            chunks = []
            while size := int(reader.readline(), 16):
                chunks.append(reader.read(size))
                assert reader.readline() == b"\r\n"
            assert reader.readline() == b"\r\n"
            assert len(chunks) > 4
            assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") and c.count(b"data: ") == 1 for c in chunks)


def test_responses_non_stream_and_stream(port):
    request = {"model": "gpt-4o-mini", "input": "Hi", "instructions": "Be brief."}
    status, body = call_json(port, "POST", "/v1/responses", request, OPENAI_AUTH)
    assert status == 200 and body["object"] == "response" and body["status"] == "completed"
    assert body["id"].startswith("resp_mock_")
    message = body["output"][0]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"][0] == {"type": "output_text", "text": DEFAULT_REPLY, "annotations": [], "logprobs": []}
    assert body["usage"]["input_tokens"] == math.ceil(11 / 4) + 8  # "Be brief." + "Hi", two messages
    assert body["usage"]["output_tokens"] == 11 and body["usage"]["total_tokens"] == 22
    assert body["usage"]["input_tokens_details"] == {"cached_tokens": 0}

    _, _, data = call(port, "POST", "/v1/responses", {**request, "stream": True}, OPENAI_AUTH)
    events = sse(data)
    names = [name for name, _ in events]
    assert names.count("response.output_text.delta") > 2
    payloads = [json.loads(d) for _, d in events]
    assert [p["sequence_number"] for p in payloads] == list(range(len(events)))
    assert all(p["type"] == name for p, name in zip(payloads, names))
    assert payloads[-1]["response"]["usage"]["output_tokens"] == 11


def test_responses_stream_event_order(port):
    _, _, data = call(port, "POST", "/v1/responses", {"model": "m", "input": "Hi", "stream": True}, OPENAI_AUTH)
    names = [name for name, _ in sse(data)]
    deltas = names.count("response.output_text.delta")
    assert names == (["response.created", "response.in_progress", "response.output_item.added",
                      "response.content_part.added"] + ["response.output_text.delta"] * deltas +
                     ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                      "response.completed"])


def test_anthropic_non_stream_and_stream(port):
    request = {"model": "claude-x", "max_tokens": 64, "system": "Be brief.", "messages": HI}
    status, body = call_json(port, "POST", "/v1/messages", request, ANTHROPIC_AUTH)
    reply = "Hello! This is the mock claude-x reply."
    assert status == 200 and body["type"] == "message" and body["id"].startswith("msg_mock_")
    assert body["content"] == [{"type": "text", "text": reply}] and body["stop_reason"] == "end_turn"
    usage = {"input_tokens": 11, "output_tokens": tokens(reply), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    assert body["usage"] == usage

    _, _, data = call(port, "POST", "/v1/messages", {**request, "stream": True}, ANTHROPIC_AUTH)
    events = sse(data)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas > 2
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * deltas + [
        "content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(d) for _, d in events]
    assert payloads[0]["message"]["usage"]["input_tokens"] == 11 and payloads[0]["message"]["usage"]["output_tokens"] == 1
    assert "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta") == reply
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn" and payloads[-2]["usage"]["output_tokens"] == usage["output_tokens"]


def test_anthropic_requires_max_tokens(port):
    status, body = call_json(port, "POST", "/v1/messages", {"model": "claude-x", "messages": HI}, ANTHROPIC_AUTH)
    assert status == 400
    assert body == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}


def test_azure_chat(port):
    status, body = call_json(port, "POST", AZURE_CHAT, {"messages": HI}, AZURE_AUTH)
    assert status == 200 and body["model"] == "my-deployment"
    assert body["choices"][0]["message"]["content"] == "Hello! This is the mock my-deployment reply."
    path = "/openai/deployments/my-deployment/responses?api-version=2025-04-01-preview"
    status, body = call_json(port, "POST", path, {"input": "Hi"}, AZURE_AUTH)
    assert status == 200 and body["model"] == "my-deployment"
    status, body = call_json(port, "POST", AZURE_CHAT.split("?")[0], {"messages": HI}, AZURE_AUTH)
    assert status == 400 and "api-version" in body["error"]["message"]
    # Azure's v1 API needs no api-version.
    status, body = call_json(port, "POST", "/openai/v1/responses", {"model": "my-deployment", "input": "Hi"}, AZURE_AUTH)
    assert status == 200 and body["model"] == "my-deployment"
    status, body = call_json(port, "POST", AZURE_CHAT, {"messages": HI}, {"api-key": "wrong"})
    assert status == 401 and body["error"]["code"] == "401"


def test_models(port):
    status, body = call_json(port, "GET", "/v1/models", headers=OPENAI_AUTH)
    assert status == 200 and body["object"] == "list" and body["data"][0]["object"] == "model"


def test_auth_failures(port):
    status, body = call_json(port, "POST", "/v1/chat/completions", {"model": "m", "messages": HI}, {"Authorization": "Bearer nope"})
    assert status == 401
    assert body == {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                              "param": None, "code": "invalid_api_key"}}
    assert call(port, "POST", "/v1/responses", {"model": "m", "input": "Hi"})[0] == 401
    anthropic_error = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    request = {"model": "c", "max_tokens": 5, "messages": HI}
    assert call_json(port, "POST", "/v1/messages", request, {"x-api-key": "mock-anthropic-key"}) == (401, anthropic_error)
    assert call_json(port, "POST", "/v1/messages", request, {**ANTHROPIC_AUTH, "x-api-key": "bad"}) == (401, anthropic_error)


def test_malformed_json(port):
    status, _, data = call(port, "POST", "/v1/chat/completions", raw=b"{nope", headers=OPENAI_AUTH)
    assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error"
    status, _, data = call(port, "POST", "/v1/messages", raw=b"{nope", headers=ANTHROPIC_AUTH)
    assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error"


def test_echo_and_chunked_request_body(port):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "ignored"}, {"type": "text", "text": "echo:  exact words  "}]}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=iter([body[:10], body[10:]]), headers=OPENAI_AUTH, encode_chunked=True)
    reply = json.loads(conn.getresponse().read())
    conn.close()
    assert reply["choices"][0]["message"]["content"] == "exact words"
    assert recorded(port)[0]["raw_body_len"] == len(body)


def test_tool_calls_raw(port):
    request = {"model": "m", "messages": [{"role": "user", "content": "please call tool"}], "tools": CHAT_TOOLS}
    _, body = call_json(port, "POST", "/v1/chat/completions", request, OPENAI_AUTH)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "call_mock_1", "type": "function",
                                                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]
    # A forced tool is called without the trigger phrase; a tool result gets a text answer.
    forced = {"type": "function", "function": {"name": "other"}}
    _, body = call_json(port, "POST", "/v1/chat/completions", {**request, "messages": HI, "tool_choice": forced}, OPENAI_AUTH)
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "other"
    after = request["messages"] + [body["choices"][0]["message"], {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny"}]
    _, body = call_json(port, "POST", "/v1/chat/completions", {**request, "messages": after}, OPENAI_AUTH)
    assert body["choices"][0]["finish_reason"] == "stop"

    anthropic_request = {"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "call tool"}],
                         "tools": ANTHROPIC_TOOLS, "stream": True}
    _, _, data = call(port, "POST", "/v1/messages", anthropic_request, ANTHROPIC_AUTH)
    payloads = [json.loads(d) for _, d in sse(data)]
    partial = [p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta"]
    assert len(partial) >= 2 and json.loads("".join(partial)) == {"location": "Paris"}
    assert payloads[1]["content_block"]["type"] == "tool_use" and payloads[-2]["delta"]["stop_reason"] == "tool_use"


def test_responses_tool_round_trip_and_forced_anthropic_tool(port):
    items = [{"role": "user", "content": "call tool"},
             {"type": "function_call", "call_id": "call_mock_1", "name": "get_weather", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_mock_1", "output": "sunny"}]
    _, body = call_json(port, "POST", "/v1/responses", {"model": "m", "input": items, "tools": RESPONSES_TOOLS}, OPENAI_AUTH)
    assert body["output"][0]["type"] == "message"
    assert body["usage"]["input_tokens"] == math.ceil(len("call toolsunny") / 4) + 12
    request = {"model": "c", "max_tokens": 9, "messages": HI, "tools": ANTHROPIC_TOOLS + [{"name": "lookup"}],
               "tool_choice": {"type": "tool", "name": "lookup"}}
    _, body = call_json(port, "POST", "/v1/messages", request, ANTHROPIC_AUTH)
    assert body["content"][0]["name"] == "lookup" and body["stop_reason"] == "tool_use"


def test_recording_and_clearing(port):
    call(port, "POST", "/v1/chat/completions?x=1", {"model": "m", "messages": HI}, {"Authorization": "Bearer bad", "X-Custom": "v"})
    call(port, "GET", "/__mock/health")
    entries = recorded(port)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["method"] == "POST" and entry["path"] == "/v1/chat/completions" and entry["query"] == {"x": "1"}
    assert entry["headers"]["authorization"] == "Bearer bad" and entry["headers"]["x-custom"] == "v"
    assert entry["body"] == {"model": "m", "messages": HI}
    assert entry["raw_body_len"] == len(json.dumps({"model": "m", "messages": HI}))
    call(port, "POST", "/v1/responses", raw=b"not json", headers=OPENAI_AUTH)
    assert [e["body"] for e in recorded(port)] == [entry["body"], None]
    assert call(port, "DELETE", "/__mock/requests")[0] == 200
    assert recorded(port) == []


def test_gateway_key_leak_is_rejected(port):
    leaked = {**OPENAI_AUTH, "x-forwarded-key": "Bearer tg-" + "A1_-" * 6}
    status, body = call_json(port, "POST", "/v1/chat/completions", {"model": "m", "messages": HI}, leaked)
    assert status == 400 and body["error"]["message"] == "gateway key leaked upstream"
    status, body = call_json(port, "POST", "/v1/messages", {}, {**ANTHROPIC_AUTH, "authorization": "Bearer tg-" + "x" * 20})
    assert status == 400 and body["error"]["message"] == "gateway key leaked upstream" and body["type"] == "error"
    assert len(recorded(port)) == 2


# ---------------------------------------------------------------- faults


def test_queued_429_applies_to_next_n_requests(port):
    assert call_json(port, "POST", "/__mock/faults", {"fault": "429", "count": 2}) == (200, {"queued": "429", "count": 2})
    chat = {"model": "m", "messages": HI}
    for _ in range(2):
        status, headers, data = call(port, "POST", "/v1/chat/completions", chat, OPENAI_AUTH)
        assert status == 429 and headers["retry-after"] == "1"
        assert json.loads(data)["error"]["code"] == "rate_limit_exceeded"
    assert call(port, "POST", "/v1/chat/completions", chat, OPENAI_AUTH)[0] == 200


def test_fault_header_in_provider_formats(port):
    request = {"model": "c", "max_tokens": 5, "messages": HI}
    status, headers, data = call(port, "POST", "/v1/messages", request, {**ANTHROPIC_AUTH, "x-mock-fault": "429"})
    assert status == 429 and headers["retry-after"] == "1" and json.loads(data)["error"]["type"] == "rate_limit_error"
    status, body = call_json(port, "POST", "/v1/messages", request, {**ANTHROPIC_AUTH, "x-mock-fault": "500"})
    assert status == 500 and body["error"]["type"] == "api_error"
    status, body = call_json(port, "POST", "/v1/chat/completions", {"model": "m", "messages": HI}, {**OPENAI_AUTH, "x-mock-fault": "500"})
    assert status == 500 and body["error"]["type"] == "server_error"
    status, body = call_json(port, "POST", AZURE_CHAT, {"messages": HI}, {**AZURE_AUTH, "x-mock-fault": "503"})
    assert status == 503 and body["error"]["type"] == "server_error"
    assert call(port, "POST", "/v1/responses", {"model": "m"}, {**OPENAI_AUTH, "x-mock-fault": "bogus"})[0] == 400
    assert call(port, "POST", "/__mock/faults", {"fault": "bogus"})[0] == 400


def test_slow_fault_and_chunk_delay(port):
    started = time.monotonic()
    assert call(port, "POST", "/v1/responses", {"model": "m", "input": "Hi"}, {**OPENAI_AUTH, "x-mock-fault": "slow:300"})[0] == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    request = {"model": "m", "input": "Hi", "stream": True}
    call(port, "POST", "/v1/responses", request, {**OPENAI_AUTH, "x-mock-chunk-delay-ms": "20"})
    assert time.monotonic() - started >= 0.2  # 14 events, 13 gaps


def test_reset_closes_without_answer(port):
    call(port, "POST", "/__mock/faults", {"fault": "reset", "count": 1})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(port, "POST", "/v1/chat/completions", {"model": "m", "messages": HI}, OPENAI_AUTH)
    assert call(port, "POST", "/v1/chat/completions", {"model": "m", "messages": HI}, OPENAI_AUTH)[0] == 200
    assert call(port, "DELETE", "/__mock/faults")[0] == 200


def test_reset_mid_stream_cuts_the_stream(port):
    request = {"model": "c", "max_tokens": 5, "messages": HI, "stream": True}
    with pytest.raises(http.client.IncompleteRead) as cut:
        call(port, "POST", "/v1/messages", request, {**ANTHROPIC_AUTH, "x-mock-fault": "reset-mid-stream"})
    assert [name for name, _ in sse(cut.value.partial)] == ["message_start", "content_block_start", "ping"]


def test_bad_sse_inserts_a_non_json_event(port):
    request = {"model": "m", "messages": HI, "stream": True}
    _, _, data = call(port, "POST", "/v1/chat/completions", request, {**OPENAI_AUTH, "x-mock-fault": "bad-sse"})
    events = sse(data)
    with pytest.raises(ValueError):
        json.loads(events[1][1])
    assert events[-1] == (None, "[DONE]")


def test_clearing_faults(port):
    call(port, "POST", "/__mock/faults", {"fault": "500", "count": 5})
    call(port, "DELETE", "/__mock/faults")
    assert call(port, "POST", "/v1/chat/completions", {"model": "m", "messages": HI}, OPENAI_AUTH)[0] == 200


# ---------------------------------------------------------------- official SDKs


@pytest.fixture
def oai(port):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="mock-openai-key", max_retries=0)


@pytest.fixture
def claude(port):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="mock-anthropic-key", max_retries=0)


@pytest.fixture
def azure(port):
    return openai.AzureOpenAI(azure_endpoint=f"http://127.0.0.1:{port}", api_key="mock-azure-key",
                              api_version="2024-10-21", max_retries=0)


def test_sdk_openai_chat(oai):
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 11)

    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].usage.total_tokens == 16

    with oai.chat.completions.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "echo: streamed text"}],
                                     stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "streamed text"
    assert final.usage.completion_tokens == tokens("streamed text")


def test_sdk_openai_chat_tool_call(oai):
    messages = [{"role": "user", "content": "call tool please"}]
    completion = oai.chat.completions.create(model="m", messages=messages, tools=CHAT_TOOLS)
    call_ = completion.choices[0].message.tool_calls[0]
    assert (call_.id, call_.function.name, json.loads(call_.function.arguments)) == ("call_mock_1", "get_weather", {"location": "Paris"})
    with oai.chat.completions.stream(model="m", messages=messages, tools=CHAT_TOOLS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"location":"Paris"}'


def test_sdk_openai_responses(oai):
    response = oai.responses.create(model="gpt-4o-mini", input="Hi")
    assert response.output_text == DEFAULT_REPLY and response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 11)

    events = list(oai.responses.create(model="gpt-4o-mini", input="Hi", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == DEFAULT_REPLY
    assert events[-1].response.usage.total_tokens == 16

    conversation = [{"role": "user", "content": [{"type": "input_text", "text": "echo: from the helper"}]}]
    with oai.responses.stream(model="gpt-4o-mini", input=conversation) as stream:
        final = stream.get_final_response()
    assert final.output_text == "from the helper"
    assert final.usage.output_tokens == tokens("from the helper")


def test_sdk_openai_responses_tool_call(oai):
    response = oai.responses.create(model="m", input="call tool", tools=RESPONSES_TOOLS)
    assert (response.output[0].type, response.output[0].name) == ("function_call", "get_weather")
    with oai.responses.stream(model="m", input="call tool", tools=RESPONSES_TOOLS) as stream:
        final = stream.get_final_response()
    item = final.output[0]
    assert (item.call_id, item.name, json.loads(item.arguments)) == ("call_mock_1", "get_weather", {"location": "Paris"})


def test_sdk_openai_errors(oai):
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="m", messages=HI, extra_headers={"x-mock-fault": "429"})
    with pytest.raises(openai.AuthenticationError):
        oai.with_options(api_key="wrong").chat.completions.create(model="m", messages=HI)


def test_sdk_anthropic(claude):
    reply = "Hello! This is the mock claude-x reply."
    message = claude.messages.create(model="claude-x", max_tokens=64, messages=HI)
    assert message.content[0].text == reply and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, tokens(reply))

    events = list(claude.messages.create(model="claude-x", max_tokens=64, messages=HI, stream=True))
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == reply

    with claude.messages.stream(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "echo: via stream"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) >= 2 and final.content[0].text == "via stream"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (math.ceil(16 / 4) + 4, tokens("via stream"))


def test_sdk_anthropic_tool_use(claude):
    messages = [{"role": "user", "content": "call tool"}]
    message = claude.messages.create(model="c", max_tokens=64, messages=messages, tools=ANTHROPIC_TOOLS)
    assert message.stop_reason == "tool_use" and message.content[0].input == {"location": "Paris"}
    with claude.messages.stream(model="c", max_tokens=64, messages=messages, tools=ANTHROPIC_TOOLS) as stream:
        final = stream.get_final_message()
    block = final.content[0]
    assert (block.type, block.id, block.name, block.input) == ("tool_use", "toolu_mock_1", "get_weather", {"location": "Paris"})
    assert final.stop_reason == "tool_use"
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="c", max_tokens=5, messages=HI, extra_headers={"x-mock-fault": "429"})


def test_sdk_azure(azure, port):
    completion = azure.chat.completions.create(model="my-deployment", messages=HI)
    assert completion.model == "my-deployment"
    assert completion.choices[0].message.content == "Hello! This is the mock my-deployment reply."
    response = azure.responses.create(model="my-deployment", input="Hi")
    assert response.output_text == "Hello! This is the mock my-deployment reply."
    paths = [(e["path"], e["query"]["api-version"], e["headers"]["api-key"]) for e in recorded(port)]
    assert paths == [("/openai/deployments/my-deployment/chat/completions", "2024-10-21", "mock-azure-key"),
                     ("/openai/responses", "2024-10-21", "mock-azure-key")]
