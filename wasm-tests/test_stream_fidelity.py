"""Guarded streams lose nothing: with the output guardrails on (the shipped
default), a same-API stream reaches the SDK as the provider sent it, with only
the text the guardrails must change rewritten: several choices, extended
thinking and its signature, stop sequences."""

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
