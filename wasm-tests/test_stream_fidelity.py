"""Guarded streams lose nothing: with the output guardrails on (the shipped
default), a same-API stream reaches the SDK as the provider sent it, with only
the text the guardrails must change rewritten: several choices, extended
thinking and its signature, stop sequences."""

import json

import pytest

from conftest import anthropic_client, openai_client

REPLY = "Bonjour, ça va? Tout est traduit."
ECHO = f"echo: {REPLY}"
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}
THINKING = {"type": "enabled", "budget_tokens": 1024}


def choice_texts(chunks) -> dict:
    texts = {}
    for chunk in chunks:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
    return texts


def test_a_chat_stream_keeps_each_choice_apart(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", n=2, stream=True, messages=[{"role": "user", "content": ECHO}]))
    assert choice_texts(chunks) == {0: REPLY, 1: REPLY}
    finishes = sorted((c.index, c.finish_reason) for k in chunks for c in k.choices if c.finish_reason)
    assert finishes == [(0, "stop"), (1, "stop")]
    with client.chat.completions.stream(model="gpt-4o", n=2, messages=[{"role": "user", "content": ECHO}]) as s:
        final = s.get_final_completion()
    assert [c.message.content for c in final.choices] == [REPLY, REPLY]


def test_each_choice_is_redacted_in_its_own_text(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", n=2, stream=True,
        messages=[{"role": "user", "content": "echo: write to jane.doe@example.com today"}]))
    assert choice_texts(chunks) == {0: "write to [EMAIL_1] today", 1: "write to [EMAIL_1] today"}


def test_extended_thinking_streams_with_its_signature_for_the_next_turn(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    question = {"role": "user", "content": "What is the weather in Paris? call tool"}
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=2048, thinking=THINKING,
                                tools=[WEATHER], messages=[question]) as s:
        first = s.get_final_message()
    thinking, call = first.content
    assert thinking.type == "thinking" and thinking.thinking.startswith("The user wants")
    assert thinking.signature.startswith("mocksig-")
    assert call.type == "tool_use" and first.stop_reason == "tool_use"
    # The provider checks the signed block it issued: the next turn passes.
    turn = [question, {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=2048, thinking=THINKING,
                                tools=[WEATHER], messages=turn) as s:
        second = s.get_final_message()
    assert [b.type for b in second.content] == ["thinking", "text"]
    assert second.stop_reason == "end_turn"


def test_a_stop_sequence_reaches_the_client(stack, key):
    client = anthropic_client(stack.envoy.base_url, key)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=256, stop_sequences=["END"],
                                messages=[{"role": "user", "content": "echo: one two END three"}]) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END")
    assert final.content[0].text == "one two "


WEATHER_OPENAI = {"type": "function", "function": {"name": WEATHER["name"], "description": WEATHER["description"],
                                                   "parameters": WEATHER["input_schema"]}}
WEATHER_RESPONSES = {"type": "function", "name": WEATHER["name"], "description": WEATHER["description"],
                     "parameters": WEATHER["input_schema"]}
LEAKY_CALL = "call tool location: jane.doe@example.com"
REDACTED_INPUT = {"location": "[EMAIL_1]"}


@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5"])
def test_streamed_tool_call_arguments_are_guarded_like_whole_answers(stack, key, model):
    """The arguments a model streams into a tool call are scanned as a non-streamed answer's are, in place
    (same API) and translated."""
    client = openai_client(stack.envoy.base_url, key)
    chunks = list(client.chat.completions.create(model=model, stream=True, tools=[WEATHER_OPENAI],
                                                 messages=[{"role": "user", "content": LEAKY_CALL}]))
    arguments = "".join(call.function.arguments or "" for c in chunks for ch in c.choices
                        for call in (ch.delta.tool_calls or []))
    assert json.loads(arguments) == REDACTED_INPUT
    with anthropic_client(stack.envoy.base_url, key).messages.stream(
            model=model, max_tokens=256, tools=[WEATHER],
            messages=[{"role": "user", "content": LEAKY_CALL}]) as s:
        message = s.get_final_message()
    assert [b.input for b in message.content if b.type == "tool_use"] == [REDACTED_INPUT]
    with client.responses.stream(model=model, tools=[WEATHER_RESPONSES], input=LEAKY_CALL) as s:
        response = s.get_final_response()
    calls = [item for item in response.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [REDACTED_INPUT]


def test_a_streamed_refusal_is_guarded_like_a_whole_one(stack, key):
    client = openai_client(stack.envoy.base_url, key)
    ask = [{"role": "user", "content": "refuse: I will not write to jane.doe@example.com"}]
    whole = client.chat.completions.create(model="gpt-4o", messages=ask).choices[0].message.refusal
    chunks = list(client.chat.completions.create(model="gpt-4o", stream=True, messages=ask))
    streamed = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert streamed == whole == "I will not write to [EMAIL_1]"
