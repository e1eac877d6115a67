"""Any model from any SDK: each official SDK call against each upstream kind
(openai, anthropic, azure, openai-compatible) through the mock provider,
asserting what the SDK parsed, streams and the SDKs' stream helpers included."""

import json
import math

import pytest

from conftest import anthropic_client, openai_client

# model -> (provider kind, model name the mock sees)
MODELS = {
    "gpt-4o": ("openai", "gpt-4o"),
    "claude-haiku-4-5": ("anthropic", "claude-haiku-4-5"),
    "azure-gpt-4o": ("azure", "gpt-4o"),
    "local-llama": ("openai-compatible", "local-llama"),
}
ECHO = "echo: Bonjour, ça va? Tout est traduit."
REPLY = "Bonjour, ça va? Tout est traduit."
WEATHER_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
WEATHER_RESPONSES = {"type": "function", "name": "get_weather", "description": "Weather for a city",
                     "parameters": WEATHER_OPENAI["function"]["parameters"]}
WEATHER_ANTHROPIC = {"name": "get_weather", "description": "Weather for a city",
                     "input_schema": WEATHER_OPENAI["function"]["parameters"]}


def output_tokens(text: str) -> int:
    """The mock's count: ceil(chars / 4)."""
    return max(1, math.ceil(len(text) / 4))


def upstream_paths(stack) -> list[str]:
    return [r["path"] for r in stack.mock("GET", "/__mock/requests")]


def expected_path(kind: str) -> str:
    return {"openai": "/v1/chat/completions", "anthropic": "/v1/messages",
            "azure": "/openai/deployments/gpt-4o/chat/completions",
            "openai-compatible": "/v1/chat/completions"}[kind]


@pytest.mark.parametrize("model", MODELS)
def test_openai_chat(stack, key, model):
    kind, _ = MODELS[model]
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": ECHO}])
    assert reply.choices[0].message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == output_tokens(REPLY)
    assert reply.usage.prompt_tokens > 0
    assert upstream_paths(stack) == [expected_path(kind)]


@pytest.mark.parametrize("model", MODELS)
def test_openai_chat_stream(stack, key, model):
    client = openai_client(stack.envoy.base_url, key)
    chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": ECHO}],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == output_tokens(REPLY)
    # Without include_usage the client gets no usage chunk, even though the
    # gateway asks OpenAI-format upstreams for one.
    chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": ECHO}],
                                                 stream=True))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": ECHO}]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == REPLY


@pytest.mark.parametrize("model", MODELS)
def test_openai_chat_tools(stack, key, model):
    client = openai_client(stack.envoy.base_url, key)
    reply = client.chat.completions.create(model=model, tools=[WEATHER_OPENAI],
                                           messages=[{"role": "user", "content": "call tool for Paris"}])
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"location": "Paris"})
    # The tool result goes back up in the provider's format and the model answers.
    follow = client.chat.completions.create(model=model, tools=[WEATHER_OPENAI], messages=[
        {"role": "user", "content": "call tool for Paris"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert follow.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model=model, tools=[WEATHER_OPENAI], stream=True,
                                            messages=[{"role": "user", "content": "call tool for Paris"}])
    args, names = "", []
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            names += [tc.function.name] if tc.function and tc.function.name else []
            args += tc.function.arguments or "" if tc.function else ""
    assert names == ["get_weather"] and json.loads(args) == {"location": "Paris"}


@pytest.mark.parametrize("model", MODELS)
def test_openai_responses(stack, key, model):
    client = openai_client(stack.envoy.base_url, key)
    response = client.responses.create(model=model, input=ECHO, instructions="Be terse.")
    assert response.output_text == REPLY
    assert response.status == "completed"
    assert response.usage.output_tokens == output_tokens(REPLY)
    with client.responses.stream(model=model, input=ECHO) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text == REPLY
    assert final.usage.output_tokens == output_tokens(REPLY)


@pytest.mark.parametrize("model", MODELS)
def test_openai_responses_tools(stack, key, model):
    client = openai_client(stack.envoy.base_url, key)
    response = client.responses.create(model=model, input="call tool for Paris", tools=[WEATHER_RESPONSES])
    calls = [o for o in response.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"location": "Paris"})]
    with client.responses.stream(model=model, input="call tool for Paris", tools=[WEATHER_RESPONSES]) as s:
        final = s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"location": "Paris"})]


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_messages(stack, key, model):
    client = anthropic_client(stack.envoy.base_url, key)
    message = client.messages.create(model=model, max_tokens=200, system="Be terse.",
                                     messages=[{"role": "user", "content": ECHO}])
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == output_tokens(REPLY)
    with client.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": ECHO}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == final.content[0].text == REPLY
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == output_tokens(REPLY)
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_tool_use(stack, key, model):
    client = anthropic_client(stack.envoy.base_url, key)
    message = client.messages.create(model=model, max_tokens=200, tools=[WEATHER_ANTHROPIC],
                                     messages=[{"role": "user", "content": "call tool for Paris"}])
    tool = next(b for b in message.content if b.type == "tool_use")
    assert message.stop_reason == "tool_use"
    assert (tool.name, tool.input) == ("get_weather", {"location": "Paris"})
    follow = client.messages.create(model=model, max_tokens=200, tools=[WEATHER_ANTHROPIC], messages=[
        {"role": "user", "content": "call tool for Paris"},
        {"role": "assistant", "content": [b.model_dump() for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}]}])
    assert follow.stop_reason == "end_turn"
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER_ANTHROPIC],
                                messages=[{"role": "user", "content": "call tool for Paris"}]) as s:
        final = s.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert (tool.name, tool.input, final.stop_reason) == ("get_weather", {"location": "Paris"}, "tool_use")


def test_provider_error_arrives_in_client_format(stack, key):
    import anthropic
    import openai
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(stack.envoy.base_url, key).chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "429"})
    assert err.value.body["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as err:
        anthropic_client(stack.envoy.base_url, key).messages.create(
            model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-fault": "500"})
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "api_error"


REFUSAL = "No poem today."


def test_refusals_cross_apis(stack, key):
    prompt = f"refuse: {REFUSAL}"
    messages = [{"role": "user", "content": prompt}]
    # An OpenAI refusal to an Anthropic client: its text, ending in `refusal`.
    claude_sdk = anthropic_client(stack.envoy.base_url, key)
    message = claude_sdk.messages.create(model="gpt-4o", max_tokens=100, messages=messages)
    assert (message.content[0].text, message.stop_reason) == (REFUSAL, "refusal")
    with claude_sdk.messages.stream(model="gpt-4o", max_tokens=100, messages=messages) as s:
        final = s.get_final_message()
    assert (final.content[0].text, final.stop_reason) == (REFUSAL, "refusal")
    # To a Responses client served over Chat Completions (openai-compatible): a refusal part.
    openai_sdk = openai_client(stack.envoy.base_url, key)
    response = openai_sdk.responses.create(model="local-llama", input=prompt)
    assert response.status == "completed"
    assert [(c.type, c.refusal) for c in response.output[0].content] == [("refusal", REFUSAL)]
    with openai_sdk.responses.stream(model="local-llama", input=prompt) as s:
        deltas = [e.delta for e in s if e.type == "response.refusal.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output[0].content[0].refusal == REFUSAL
    # An Anthropic refusal to OpenAI clients: a content filter.
    reply = openai_sdk.chat.completions.create(model="claude-haiku-4-5", messages=messages)
    assert reply.choices[0].finish_reason == "content_filter"
    response = openai_sdk.responses.create(model="claude-haiku-4-5", input=prompt)
    assert (response.status, response.incomplete_details.reason) == ("incomplete", "content_filter")


def test_reasoning_crosses_apis(stack, key):
    """Gemini's thought summaries reach an Anthropic client as thinking blocks
    (unsigned, so the gateway keeps them from Anthropic) and a Responses
    client as a reasoning summary."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    turn = [{"role": "user", "content": ECHO}]
    claude_sdk = anthropic_client(stack.envoy.base_url, key)
    message = claude_sdk.messages.create(model="gemini-2.5-flash", max_tokens=2048, thinking=thinking, messages=turn)
    thought, text = message.content
    assert (thought.type, thought.signature, text.text) == ("thinking", "", REPLY)
    assert thought.thinking.startswith("The user wants gemini-2.5-flash")
    with claude_sdk.messages.stream(model="gemini-2.5-flash", max_tokens=2048, thinking=thinking, messages=turn) as s:
        final = s.get_final_message()
    assert [(b.type, getattr(b, "thinking", None)) for b in final.content] == [
        ("thinking", thought.thinking), ("text", None)]
    # The next turn goes to Claude, which refuses thinking it did not sign.
    follow = claude_sdk.messages.create(model="claude-haiku-4-5", max_tokens=2048, thinking=thinking, messages=[
        *turn, {"role": "assistant", "content": [b.model_dump() for b in message.content]}, *turn])
    assert follow.stop_reason == "end_turn"
    sent = stack.mock("GET", "/__mock/requests")[-1]["body"]["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["text"]
    openai_sdk = openai_client(stack.envoy.base_url, key)
    response = openai_sdk.responses.create(model="gemini-2.5-flash", input=ECHO, reasoning={"summary": "auto"})
    assert [o.type for o in response.output] == ["reasoning", "message"]
    assert (response.output[0].summary[0].text, response.output_text) == (thought.thinking, REPLY)
    with openai_sdk.responses.stream(model="gemini-2.5-flash", input=ECHO, reasoning={"summary": "auto"}) as s:
        summary = "".join(e.delta for e in s if e.type == "response.reasoning_summary_text.delta")
        final = s.get_final_response()
    assert summary == final.output[0].summary[0].text == thought.thinking
