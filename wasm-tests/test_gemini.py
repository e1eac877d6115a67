"""A Gemini provider (`kind: gemini`, Google's native generateContent API)
behind the official OpenAI and Anthropic SDKs: answers and streams
translated both ways, provider errors in each SDK's format, usage in the
ledger, the upstream request in Gemini's shape with the provider key in
`x-goog-api-key`, and guardrails applied before the request reaches Gemini."""

import math

import anthropic
import openai
import pytest

from conftest import anthropic_client, openai_client, wait_for

MODEL = "gemini-2.5-flash"
ECHO = "echo: Bonjour de Gemini, tout est traduit."
REPLY = "Bonjour de Gemini, tout est traduit."
PATH = f"/v1beta/models/{MODEL}:generateContent"
STREAM_PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"


def output_tokens(text: str) -> int:
    """The mock's count: ceil(chars / 4)."""
    return max(1, math.ceil(len(text) / 4))


def upstream(stack) -> dict:
    (request,) = stack.mock("GET", "/__mock/requests")
    return request


def ledger_row(stack, key: str) -> dict:
    kid = next(k["id"] for k in stack.admin("GET", "/admin/keys")["keys"] if key.startswith(k["key_prefix"]))

    def rows():
        found = stack.admin("GET", f"/admin/usage/requests?key_id={kid}&limit=10")
        return found["requests"] if isinstance(found, dict) else found

    found, _ = wait_for(rows, timeout=10, step=0.2)
    assert found and len(found) == 1, found
    return found[0]


def assert_gemini_request(request: dict, key: str, path: str) -> None:
    assert request["path"] == path
    headers = request["headers"]
    assert headers["x-goog-api-key"] == "mock-gemini-key"
    assert "authorization" not in headers and "x-api-key" not in headers
    assert all(key not in value for value in headers.values()), "the gateway key leaked upstream"
    body = request["body"]
    assert "model" not in body and "stream" not in body and "messages" not in body
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": ECHO}]}]


def test_openai_chat(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(model=MODEL, max_tokens=64, temperature=0.5, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": ECHO}])
    assert reply.choices[0].message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == MODEL
    assert reply.usage.completion_tokens == output_tokens(REPLY)
    assert reply.usage.prompt_tokens > 0
    request = upstream(stack)
    assert_gemini_request(request, key, PATH)
    assert request["body"]["generationConfig"] == {"maxOutputTokens": 64, "temperature": 0.5}
    row = ledger_row(stack, key)
    assert (row["input_tokens"], row["output_tokens"]) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert not row["estimated"]


def test_openai_chat_stream(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    chunks = list(client.chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": ECHO}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert usage.completion_tokens == output_tokens(REPLY)
    request = upstream(stack)
    assert_gemini_request(request, key, STREAM_PATH)
    assert request["query"] == {"alt": "sse"}
    row = ledger_row(stack, key)
    assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert not row["estimated"]


def test_anthropic_messages(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    message = client.messages.create(model=MODEL, max_tokens=100, system="You are terse.",
                                     messages=[{"role": "user", "content": ECHO}])
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == output_tokens(REPLY)
    request = upstream(stack)
    assert_gemini_request(request, key, PATH)
    assert request["body"]["generationConfig"] == {"maxOutputTokens": 100}
    row = ledger_row(stack, key)
    assert (row["input_tokens"], row["output_tokens"]) == (message.usage.input_tokens, message.usage.output_tokens)


def test_anthropic_messages_stream(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    with client.messages.stream(model=MODEL, max_tokens=100, system="You are terse.",
                                messages=[{"role": "user", "content": ECHO}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == output_tokens(REPLY)
    assert_gemini_request(upstream(stack), key, STREAM_PATH)
    row = ledger_row(stack, key)
    assert row["output_tokens"] == output_tokens(REPLY)
    assert not row["estimated"]


def test_tool_call_round_trip(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
    reply = client.chat.completions.create(model=MODEL, tools=[weather], tool_choice="required",
                                           messages=[{"role": "user", "content": "Weather in Paris?"}])
    (call,) = reply.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"Paris"}')
    assert reply.choices[0].finish_reason == "tool_calls"
    body = upstream(stack)["body"]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_redacted_request_reaches_gemini_redacted(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    client.messages.create(model=MODEL, max_tokens=10, system="Reply to jane@example.com.",
                           messages=[{"role": "user", "content": "Mail jane@example.com and bob@corp.example."}])
    body = upstream(stack)["body"]
    assert body["systemInstruction"]["parts"][0]["text"] == "Reply to [EMAIL_1]."
    assert body["contents"][0]["parts"][0]["text"] == "Mail [EMAIL_1] and [EMAIL_2]."


def test_provider_errors_reach_each_sdk_in_its_format(stack, key):
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(stack.envoy.base_url, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-fault": "429"})
    assert "Rate limit reached" in err.value.body["message"]
    with pytest.raises(anthropic.RateLimitError) as err:
        anthropic_client(stack.envoy.base_url, key).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-fault": "429"})
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert "Rate limit reached" in err.value.body["error"]["message"]
