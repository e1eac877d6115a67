#!/usr/bin/env python3
"""Mock OpenAI / Anthropic / Azure OpenAI / Gemini upstream for Tollgate's end-to-end tests.

Envoy forwards to this server instead of the real providers. Replies use the real
wire shapes (so the official SDKs parse them) and are deterministic, so tests can
assert exact text and token counts. The /__mock/* endpoints let tests see what
reached the upstream and inject faults. Standard library only.

Run: python3 mock_provider.py --port 18000 [--host 127.0.0.1]
Import: server, port = start(0); ...; server.shutdown()
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

OPENAI_KEY = "mock-openai-key"
ANTHROPIC_KEY = "mock-anthropic-key"
# A second key of each, as for a pool of keys or deployments of one provider.
SECOND_KEY_SUFFIX = "-2"
AZURE_KEY = "mock-azure-key"
GEMINI_KEY = "mock-gemini-key"

TOOL_INPUT = {"location": "Paris"}
OPENAI_CALL_ID = "call_mock_1"
ANTHROPIC_CALL_ID = "toolu_mock_1"
PIECE_CHARS = 8  # streamed deltas are this long, so every reply spans several chunks
MID_STREAM_EVENTS = 3  # events sent before a reset-mid-stream or error-mid-stream fault

# A Tollgate gateway key ("tg-" + 20+ url-safe chars) must never reach a provider.
GATEWAY_KEY = re.compile(r"tg-[A-Za-z0-9_-]{20,}")
FAULTS = {"400", "429", "500", "503", "reset", "reset-mid-stream", "error-mid-stream", "bad-sse"}
# slow:<ms> answers late; slow:<ms>:<fault> fails late (a 500 after a while, say).
SLOW_FAULT = re.compile(r"slow:(\d+)(?::(429|500|503|reset))?")

# kind -> (HTTP status, OpenAI error type, OpenAI error code, Anthropic error type, Google status)
ERRORS = {
    "auth": (401, "invalid_request_error", "invalid_api_key", "authentication_error", "UNAUTHENTICATED"),
    "invalid": (400, "invalid_request_error", None, "invalid_request_error", "INVALID_ARGUMENT"),
    "not_found": (404, "invalid_request_error", None, "not_found_error", "NOT_FOUND"),
    "429": (429, "requests", "rate_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    "500": (500, "server_error", None, "api_error", "INTERNAL"),
    "503": (503, "server_error", None, "overloaded_error", "UNAVAILABLE"),
}
ERRORS["400"] = ERRORS["invalid"]  # the 400 fault: a request the provider calls invalid
FAULT_MESSAGES = {
    "400": "The request is invalid for this model.",
    "429": "Rate limit reached for requests. Please try again in 1s.",
    "500": "The server had an error while processing your request.",
    "503": "The server is overloaded. Please try again later.",
}
AZURE_AUTH_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to"
    " provide a valid key for an active subscription and use a correct regional API"
    " endpoint for your resource."
)
OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini")

# (method, path pattern, flavor, api); a "deployment" group names the Azure deployment.
ROUTES = [
    ("POST", re.compile(r"/v1/chat/completions"), "openai", "chat"),
    ("POST", re.compile(r"/v1/responses"), "openai", "responses"),
    ("GET", re.compile(r"/v1/models"), "openai", "models"),
    ("POST", re.compile(r"/v1/messages"), "anthropic", "messages"),
    ("POST", re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions"), "azure", "chat"),
    ("POST", re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/responses"), "azure", "responses"),
    # AzureOpenAI sends Responses calls here, with the deployment as the body's model;
    # Azure's v1 API takes them (and needs no api-version) on /openai/v1/responses.
    ("POST", re.compile(r"/openai/responses"), "azure", "responses"),
    ("POST", re.compile(r"/openai/v1/responses"), "azure", "responses"),
    # Gemini names the model in the path (like an Azure deployment) and streams on its own path.
    ("POST", re.compile(r"/v1beta/models/(?P<deployment>[^/:]+):generateContent"), "gemini", "gemini"),
    ("POST", re.compile(r"/v1beta/models/(?P<deployment>[^/:]+):streamGenerateContent"), "gemini", "gemini-stream"),
]
REQUIRED_FIELDS = {"chat": ("model", "messages"), "responses": ("model",), "messages": ("model", "messages", "max_tokens"),
                   "gemini": ("contents",), "gemini-stream": ("contents",)}


# ---------------------------------------------------------------- shared state


class MockState:
    """Recorded requests, queued faults and the id counter, shared by handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._faults: list[list] = []  # [fault, remaining uses, {flavor, credential}], first in first out
        self._counter = 0

    def record(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    def recorded(self) -> list[dict]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def queue_fault(self, fault: str, count: int, only: dict | None = None) -> None:
        with self._lock:
            self._faults.append([fault, count, only or {}])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, request: dict) -> str | None:
        """The first queued fault whose filters (flavor, credential) match `request`."""
        with self._lock:
            for i, entry in enumerate(self._faults):
                if any(request.get(k) != v for k, v in entry[2].items()):
                    continue
                entry[1] -= 1
                if entry[1] <= 0:
                    self._faults.pop(i)
                return entry[0]
            return None

    def next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter


def valid_fault(fault: object) -> bool:
    return isinstance(fault, str) and (fault in FAULTS or SLOW_FAULT.fullmatch(fault) is not None)


# ---------------------------------------------------------------- deterministic reply


@dataclasses.dataclass
class Reply:
    """The answer to one request, independent of the provider's wire format."""

    n: int  # counter value used in this reply's ids
    model: str
    text: str  # "" when the model calls a tool instead
    tool: str | None
    input_tokens: int
    output_tokens: int
    created: int
    piece_sizes: tuple[int, ...] = (PIECE_CHARS,)  # streamed text deltas' lengths, cycled
    choices: int = 1  # Chat `n`: each choice says the same
    stop: str | None = None  # the stop sequence the text was cut at
    thinking: str | None = None  # Anthropic extended thinking, when enabled
    tool_input: dict = dataclasses.field(default_factory=lambda: dict(TOOL_INPUT))  # "location: X" sets X
    refusal: bool = False  # "refuse: <text>": Chat Completions refuses with <text>, Anthropic stops with refusal (others echo)


def text_of(value: object) -> str:
    """All text in a message, content part or content list (tool results included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in map(text_of, value) if t)
    if isinstance(value, dict):
        return text_of(value.get("text", value.get("content", value.get("output"))))
    return ""


def ends_with_tool_result(messages: list[dict]) -> bool:
    """True when the caller is returning a tool's output, so the model should answer in text."""
    last = messages[-1] if messages else {}
    content = last.get("content")
    blocks = content if isinstance(content, list) else []
    return (
        last.get("role") == "tool"
        or last.get("type") == "function_call_output"
        or any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
    )


def tool_name(spec: dict) -> str | None:
    # Chat Completions nests the name under "function"; Responses and Anthropic don't.
    inner = spec.get("function")
    return (inner if isinstance(inner, dict) else spec).get("name")


def chosen_tool(body: dict, last_user: str, after_tool_result: bool) -> str | None:
    """Name of the tool to call, or None to answer with text."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else choice
    if not tools or after_tool_result or kind == "none":
        return None
    named = tool_name(choice) if isinstance(choice, dict) else None
    if named or kind in ("required", "any") or "call tool" in last_user:
        return named or tool_name(tools[0])
    return None


def reply_text(model: str, last_user: str) -> str:
    for marker in ("echo:", "refuse:"):
        _, found, echoed = last_user.partition(marker)
        if found:
            return echoed.strip()
    return f"Hello! This is the mock {model} reply."


def count_input_tokens(messages: list[dict]) -> int:
    return math.ceil(sum(len(text_of(m)) for m in messages) / 4) + 4 * len(messages)


def count_output_tokens(output: str) -> int:
    return max(1, math.ceil(len(output) / 4))


def stop_at(text: str, body: dict) -> tuple[str, str | None]:
    """The text cut before the first stop sequence the request names (`stop`, `stop_sequences`), and which."""
    stops = body.get("stop_sequences") or body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    hits = [(text.find(s), s) for s in stops if isinstance(s, str) and s and s in text]
    if not hits:
        return text, None
    at, stop = min(hits)
    return text[:at], stop


def thinking_enabled(body: dict) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def thinking_signature(thinking: str) -> str:
    """Stands in for Anthropic's signature: it covers the thinking text."""
    return "mocksig-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def build_reply(n: int, model: str, messages: list, body: dict) -> Reply:
    messages = [m for m in messages if isinstance(m, dict)]
    last_user = next((text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
    tool = chosen_tool(body, last_user, ends_with_tool_result(messages))
    text, stop = ("", None) if tool else stop_at(reply_text(model, last_user), body)
    _, asked, location = last_user.partition("location:")
    tool_input = {"location": location.strip()} if asked else dict(TOOL_INPUT)
    output = tool_arguments_of(tool_input) if tool else text
    choices = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 1 else 1
    thinking = f"The user wants {model} to answer; plan it step by step." if thinking_enabled(body) else None
    return Reply(n, model, text, tool, count_input_tokens(messages), count_output_tokens(output) * choices,
                 int(time.time()), choices=choices, stop=stop, thinking=thinking,
                 refusal=not tool and "refuse:" in last_user, tool_input=tool_input)


def tool_arguments_of(tool_input: dict) -> str:
    return json.dumps(tool_input, separators=(",", ":"))


def tool_arguments(reply: Reply) -> str:
    return tool_arguments_of(reply.tool_input)


def with_system(system: object, messages: list) -> list:
    return ([{"role": "system", "content": system}] if system else []) + messages


def conversation(api: str, body: dict) -> list:
    """The request's messages in one list, the system prompt first."""
    if api == "chat":
        return body["messages"]
    if api in ("gemini", "gemini-stream"):
        return gemini_conversation(body)
    if api == "messages":
        return with_system(body.get("system"), body["messages"])
    items = body.get("input") or []
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items
    return with_system(body.get("instructions"), items if isinstance(items, list) else [])


def pieces(text: str, sizes: tuple[int, ...] = (PIECE_CHARS,)) -> list[str]:
    out, at = [], 0
    for size in itertools.cycle(sizes):
        if at >= len(text):
            return out
        out.append(text[at : at + size])
        at += size


# ---------------------------------------------------------------- OpenAI Chat Completions


def chat_usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool else "stop"


def chat_head(reply: Reply, kind: str) -> dict:
    return {
        "id": f"chatcmpl-mock-{reply.n}",
        "object": kind,
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    }


def chat_completion(reply: Reply, body: dict) -> dict:
    message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    if reply.refusal:
        message.update(content=None, refusal=reply.text)
    if reply.tool:
        call = {"id": OPENAI_CALL_ID, "type": "function", "function": {"name": reply.tool, "arguments": tool_arguments(reply)}}
        message.update(content=None, tool_calls=[call])
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": chat_finish(reply)}
               for i in range(reply.choices)]
    return {**chat_head(reply, "chat.completion"), "choices": choices, "usage": chat_usage(reply)}


def chat_events(reply: Reply, body: dict) -> list:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    head = chat_head(reply, "chat.completion.chunk")

    def chunk(delta: dict, finish: str | None = None, index: int = 0) -> tuple:
        data = {**head, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:  # the real API marks every chunk but the last with usage: null
            data["usage"] = None
        return (None, data)

    if reply.tool:
        call = {"index": 0, "id": OPENAI_CALL_ID, "type": "function", "function": {"name": reply.tool, "arguments": ""}}
        first = {"role": "assistant", "content": None, "tool_calls": [call]}
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces(tool_arguments(reply))]
    elif reply.refusal:
        first = {"role": "assistant", "content": None, "refusal": ""}
        deltas = [{"refusal": p} for p in pieces(reply.text, reply.piece_sizes)]
    else:
        first = {"role": "assistant", "content": "", "refusal": None}
        deltas = [{"content": p} for p in pieces(reply.text, reply.piece_sizes)]
    # Several choices interleave, one delta of each in turn, as OpenAI sends them.
    choices = range(reply.choices)
    events = [chunk(first, index=i) for i in choices]
    events += [chunk(d, index=i) for d in deltas for i in choices]
    events += [chunk({}, chat_finish(reply), index=i) for i in choices]
    if include_usage:
        events.append((None, {**head, "choices": [], "usage": chat_usage(reply)}))
    return events + [(None, "[DONE]")]


# ---------------------------------------------------------------- OpenAI Responses


def responses_usage(reply: Reply) -> dict:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def output_item_id(reply: Reply) -> str:
    return f"fc_mock_{reply.n}" if reply.tool else f"msg_mock_{reply.n}"


def output_item(reply: Reply, done: bool) -> dict:
    status = "completed" if done else "in_progress"
    if reply.tool:
        arguments = tool_arguments(reply) if done else ""
        return {"type": "function_call", "id": output_item_id(reply), "call_id": OPENAI_CALL_ID,
                "name": reply.tool, "arguments": arguments, "status": status}
    content = [output_text(reply.text)] if done else []
    return {"type": "message", "id": output_item_id(reply), "status": status, "role": "assistant", "content": content}


def response_object(reply: Reply, body: dict, done: bool) -> dict:
    return {
        "id": f"resp_mock_{reply.n}",
        "object": "response",
        "created_at": reply.created,
        "status": "completed" if done else "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": reply.model,
        "output": [output_item(reply, True)] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": responses_usage(reply) if done else None,
        "user": None,
    }


def response_body(reply: Reply, body: dict) -> dict:
    return response_object(reply, body, done=True)


def response_delta_events(reply: Reply) -> list[tuple]:
    """The events between output_item.added and output_item.done."""
    item = {"item_id": output_item_id(reply), "output_index": 0}
    if reply.tool:
        deltas = [("response.function_call_arguments.delta", {**item, "delta": p}) for p in pieces(tool_arguments(reply))]
        done = {**item, "name": reply.tool, "arguments": tool_arguments(reply)}
        return deltas + [("response.function_call_arguments.done", done)]
    part = {**item, "content_index": 0}
    deltas = [("response.output_text.delta", {**part, "delta": p, "logprobs": []}) for p in pieces(reply.text, reply.piece_sizes)]
    return [
        ("response.content_part.added", {**part, "part": output_text("")}),
        *deltas,
        ("response.output_text.done", {**part, "text": reply.text, "logprobs": []}),
        ("response.content_part.done", {**part, "part": output_text(reply.text)}),
    ]


def response_events(reply: Reply, body: dict) -> list:
    started = {"response": response_object(reply, body, done=False)}
    events = [
        ("response.created", started),
        ("response.in_progress", started),
        ("response.output_item.added", {"output_index": 0, "item": output_item(reply, False)}),
        *response_delta_events(reply),
        ("response.output_item.done", {"output_index": 0, "item": output_item(reply, True)}),
        ("response.completed", {"response": response_object(reply, body, done=True)}),
    ]
    return [(name, {"type": name, "sequence_number": i, **data}) for i, (name, data) in enumerate(events)]


# ---------------------------------------------------------------- Anthropic Messages


def anthropic_usage(reply: Reply, output_tokens: int) -> dict:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def anthropic_block(reply: Reply, done: bool) -> dict:
    if reply.tool:
        return {"type": "tool_use", "id": ANTHROPIC_CALL_ID, "name": reply.tool, "input": reply.tool_input if done else {}}
    return {"type": "text", "text": reply.text if done else ""}


def thinking_block(reply: Reply, done: bool) -> dict:
    if not done:
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "thinking", "thinking": reply.thinking, "signature": thinking_signature(reply.thinking)}


def anthropic_message(reply: Reply, done: bool) -> dict:
    content = [thinking_block(reply, True)] if reply.thinking else []
    return {
        "id": f"msg_mock_{reply.n}",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [*content, anthropic_block(reply, True)] if done else [],
        "stop_reason": anthropic_stop(reply) if done else None,
        "stop_sequence": reply.stop if done else None,
        # message_start reports 1 output token, like the real API.
        "usage": anthropic_usage(reply, reply.output_tokens if done else 1),
    }


def anthropic_stop(reply: Reply) -> str:
    if reply.tool:
        return "tool_use"
    return "refusal" if reply.refusal else "stop_sequence" if reply.stop else "end_turn"


def messages_body(reply: Reply, body: dict) -> dict:
    return anthropic_message(reply, done=True)


def messages_events(reply: Reply, body: dict) -> list:
    if reply.tool:
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(tool_arguments(reply))]
    else:
        deltas = [{"type": "text_delta", "text": p} for p in pieces(reply.text, reply.piece_sizes)]
    thinking = []
    if reply.thinking:
        thinking = [
            ("content_block_start", {"index": 0, "content_block": thinking_block(reply, False)}),
            *[("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": p}})
              for p in pieces(reply.thinking)],
            ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta",
                                                           "signature": thinking_signature(reply.thinking)}}),
            ("content_block_stop", {"index": 0}),
        ]
    index = len(thinking) and 1
    events = [
        ("message_start", {"message": anthropic_message(reply, done=False)}),
        *thinking,
        ("content_block_start", {"index": index, "content_block": anthropic_block(reply, False)}),
        ("ping", {}),
        *[("content_block_delta", {"index": index, "delta": d}) for d in deltas],
        ("content_block_stop", {"index": index}),
        ("message_delta", {"delta": {"stop_reason": anthropic_stop(reply), "stop_sequence": reply.stop},
                           "usage": anthropic_usage(reply, reply.output_tokens)}),
        ("message_stop", {}),
    ]
    return [(name, {"type": name, **data}) for name, data in events]


# ---------------------------------------------------------------- Google Gemini generateContent


def gemini_conversation(body: dict) -> list:
    """`contents` as chat-like messages: `model` turns are the assistant's, function responses tool results."""
    messages = []
    for content in body.get("contents") or []:
        parts = content.get("parts") or [] if isinstance(content, dict) else []
        responses = [p["functionResponse"].get("response") for p in parts
                     if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)]
        if responses:
            messages.append({"role": "tool", "content": json.dumps(responses)})
        else:
            role = "assistant" if content.get("role") == "model" else "user"
            messages.append({"role": role, "content": [p for p in parts if isinstance(p, dict) and "text" in p]})
    system = body.get("systemInstruction")
    return with_system(text_of(system.get("parts")) if isinstance(system, dict) else None, messages)


def gemini_settings(body: dict) -> dict:
    """Gemini's tools, tool config and thought summaries (`includeThoughts`) in the shape `build_reply` reads."""
    declarations = [d for t in body.get("tools") or [] if isinstance(t, dict)
                    for d in t.get("functionDeclarations") or [] if isinstance(d, dict)]
    config = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {})
    named = config.get("allowedFunctionNames") or []
    choice = {"name": named[0]} if named else {"ANY": "required", "NONE": "none"}.get(config.get("mode"))
    thoughts = ((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts")
    return {"tools": declarations, "tool_choice": choice, **({"thinking": {"type": "enabled"}} if thoughts else {})}


def gemini_usage(reply: Reply, done: bool) -> dict:
    # Every chunk reports the prompt; the last one the candidates too.
    output = reply.output_tokens if done else 0
    usage = {"promptTokenCount": reply.input_tokens, "totalTokenCount": reply.input_tokens + output}
    if done:
        usage["candidatesTokenCount"] = output
    return usage


def gemini_response(reply: Reply, parts: list, done: bool) -> dict:
    candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
    if done:
        candidate["finishReason"] = "STOP"
    return {"candidates": [candidate], "usageMetadata": gemini_usage(reply, done),
            "modelVersion": reply.model, "responseId": f"gemini-mock-{reply.n}"}


def gemini_thought(reply: Reply) -> list:
    """The thought summary part, when the request asked for thoughts."""
    return [{"text": reply.thinking, "thought": True}] if reply.thinking else []


def gemini_parts(reply: Reply) -> list:
    if reply.tool:
        return [*gemini_thought(reply), {"functionCall": {"name": reply.tool, "args": reply.tool_input}}]
    return [*gemini_thought(reply), {"text": reply.text}]


def gemini_body(reply: Reply, body: dict) -> dict:
    return gemini_response(reply, gemini_parts(reply), done=True)


def gemini_events(reply: Reply, body: dict) -> list:
    """`streamGenerateContent?alt=sse`: each `data:` a partial answer, the last with the finish reason."""
    texts = [] if reply.tool else pieces(reply.text, reply.piece_sizes)
    thought = [(None, gemini_response(reply, gemini_thought(reply), done=False))] if reply.thinking else []
    events = thought + [(None, gemini_response(reply, [{"text": t}], done=False)) for t in texts[:-1]]
    call = [p for p in gemini_parts(reply) if "functionCall" in p]
    last = call if reply.tool else [{"text": texts[-1] if texts else ""}]
    return events + [(None, gemini_response(reply, last, done=True))]


# api -> (non-streamed body, streamed events); events are (SSE event name or None, data).
RENDERERS = {
    "chat": (chat_completion, chat_events),
    "responses": (response_body, response_events),
    "messages": (messages_body, messages_events),
    "gemini": (gemini_body, gemini_events),
    "gemini-stream": (gemini_body, gemini_events),
}


def mid_stream_error(flavor: str) -> bytes:
    body = error_body(flavor, "503", "Overloaded")
    return encode_event(("error", body) if flavor == "anthropic" else (None, body))


def encode_event(event: tuple) -> bytes:
    name, data = event
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {name}\n" if name else "").encode() + f"data: {payload}\n\n".encode()


def error_body(flavor: str, kind: str, message: str, code: str | None = None) -> dict:
    status, openai_type, openai_code, anthropic_type, google_status = ERRORS[kind]
    if flavor == "gemini":
        return {"error": {"code": status, "message": message, "status": google_status}}
    if flavor == "anthropic":
        return {"type": "error", "error": {"type": anthropic_type, "message": message}}
    if flavor == "azure" and kind == "auth":
        return {"error": {"code": "401", "message": message}}
    return {"error": {"message": message, "type": openai_type, "param": None, "code": code or openai_code}}


def match_route(method: str, path: str) -> tuple | None:
    """(flavor, api, deployment) for a provider endpoint, or None."""
    for route_method, pattern, flavor, api in ROUTES:
        found = pattern.fullmatch(path)
        if found and route_method == method:
            return flavor, api, found.groupdict().get("deployment")
    return None


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy pools upstream connections
    disable_nagle_algorithm = True  # each SSE chunk must leave at once, not wait for an ACK
    server: MockServer

    def log_message(self, format: str, *args: object) -> None:
        """Silent: /__mock/requests is the request log."""

    def dispatch(self) -> None:
        url = urlsplit(self.path)
        try:
            raw = self.read_body()
        except ValueError:
            self.send_error(400, "malformed request body")
            return
        if url.path.startswith("/__mock/"):
            self.control(url.path, raw)
        else:
            self.provider(url.path, dict(parse_qsl(url.query, keep_blank_values=True)), raw)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = dispatch

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def read_chunked(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline().strip():  # optional trailers, ended by a blank line
            pass
        return b"".join(parts)

    def header_map(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    # ---- responses

    def send_bytes(self, status: int, data: bytes, headers: tuple = (), fault: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if fault == "reset-mid-stream":  # announce the full length, send half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        else:
            self.wfile.write(data)

    def send_json(self, status: int, obj: object, headers: tuple = ()) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), headers)

    def send_error_body(self, flavor: str, kind: str, message: str, code: str | None = None) -> None:
        status = ERRORS[kind][0]
        headers = (("retry-after", "1"),) if status == 429 else ()
        self.send_json(status, error_body(flavor, kind, message, code), headers)

    def write_chunk(self, data: bytes) -> None:
        # wfile is unbuffered (wbufsize=0), so each chunk reaches the socket immediately.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def send_stream(self, events: list, fault: str | None, delay: float, flavor: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        frames = [encode_event(e) for e in events]
        if fault == "bad-sse":  # same event name as a real event, so parsers try to decode it
            frames.insert(1, encode_event((events[1][0], "{this is not json")))
        for i, frame in enumerate(frames):
            if fault == "reset-mid-stream" and i == MID_STREAM_EVENTS:
                self.close_connection = True  # closed without the terminating chunk
                return
            if fault == "error-mid-stream" and i == MID_STREAM_EVENTS:
                # As providers report an overload once the answer has begun: an
                # error event in the stream, then its end.
                self.write_chunk(mid_stream_error(flavor))
                break
            if i and delay:
                time.sleep(delay)
            self.write_chunk(frame)
        self.write_chunk(b"")

    def reset(self) -> None:
        """Drop the connection with a TCP RST and no response."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        # The socket really closes when rfile lets go of it in finish(), before the
        # server's own shutdown(SHUT_WR) could send a polite FIN first.
        self.connection.close()

    # ---- control endpoints

    def control(self, path: str, raw: bytes) -> None:
        state = self.server.state
        action = (self.command, path)
        if action == ("GET", "/__mock/health"):
            self.send_json(200, {"status": "ok"})
        elif action == ("GET", "/__mock/requests"):
            self.send_json(200, state.recorded())
        elif action == ("DELETE", "/__mock/requests"):
            state.clear_requests()
            self.send_json(200, {"cleared": "requests"})
        elif action == ("POST", "/__mock/faults"):
            self.queue_fault(raw)
        elif action == ("DELETE", "/__mock/faults"):
            state.clear_faults()
            self.send_json(200, {"cleared": "faults"})
        else:
            self.send_json(404, {"error": f"unknown control endpoint {self.command} {path}"})

    def queue_fault(self, raw: bytes) -> None:
        spec = parse_json(raw)
        fault = spec.get("fault") if isinstance(spec, dict) else None
        count = spec.get("count", 1) if isinstance(spec, dict) else None
        only = {k: spec[k] for k in ("flavor", "credential") if isinstance(spec, dict) and k in spec}
        if not valid_fault(fault) or not isinstance(count, int) or count < 1:
            self.send_json(400, {"error": 'expected {"fault": "429|500|503|slow:<ms>[:<fault>]|reset|reset-mid-stream|'
                                          'error-mid-stream|bad-sse",'
                                          ' "count": N>=1, optional "flavor", "credential"}'})
            return
        self.server.state.queue_fault(fault, count, only)
        self.send_json(200, {"queued": fault, "count": count})

    # ---- provider endpoints

    def provider(self, path: str, query: dict, raw: bytes) -> None:
        body = parse_json(raw)
        headers = self.header_map()
        self.server.state.record({"method": self.command, "path": path, "query": query, "headers": headers,
                                  "body": body, "raw_body_len": len(raw)})
        route = match_route(self.command, path)
        if route is None:
            self.send_error_body("openai", "not_found", f"Invalid URL ({self.command} {path})")
            return
        flavor, api, deployment = route
        if any(GATEWAY_KEY.search(v) for v in headers.values()):
            self.send_error_body(flavor, "invalid", "gateway key leaked upstream")
            return
        rejection = self.rejection(flavor, path, query)
        if rejection:
            self.send_error_body(flavor, *rejection)
            return
        fault = self.headers.get("x-mock-fault") or self.server.state.take_fault(
            {"flavor": flavor, "credential": self.credential()})
        if fault and not self.apply_fault(flavor, fault):
            return
        if api == "models":
            self.send_json(200, model_list())
            return
        self.answer(flavor, api, deployment, body, fault, query)

    def credential(self) -> str | None:
        """The provider key the request carries, in whichever header its provider reads."""
        auth = self.headers.get("Authorization") or ""
        bearer = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        return (bearer or self.headers.get("x-api-key") or self.headers.get("api-key")
                or self.headers.get("x-goog-api-key"))

    def rejection(self, flavor: str, path: str, query: dict) -> tuple | None:
        """(error kind, message) when the credentials or Azure's api-version are wrong, else None."""
        headers = self.headers
        key = self.credential()
        if flavor == "openai" and (headers.get("Authorization") != f"Bearer {key}"
                                   or key not in (OPENAI_KEY, OPENAI_KEY + SECOND_KEY_SUFFIX)):
            return "auth", "Incorrect API key provided"
        # anthropic 2.x sends its API key as a Bearer token; older clients use x-api-key.
        anthropic_key = key in (ANTHROPIC_KEY, ANTHROPIC_KEY + SECOND_KEY_SUFFIX)
        if flavor == "anthropic" and not (anthropic_key and "anthropic-version" in headers):
            return "auth", "invalid x-api-key"
        if flavor == "azure" and headers.get("api-key") != AZURE_KEY:
            return "auth", AZURE_AUTH_MESSAGE
        if flavor == "azure" and not path.startswith("/openai/v1/") and "api-version" not in query:
            return "invalid", "Missing required query parameter: api-version"
        if flavor == "gemini" and headers.get("x-goog-api-key") != GEMINI_KEY:
            return "auth", "API key not valid. Please pass a valid API key."
        return None

    def apply_fault(self, flavor: str, fault: str) -> bool:
        """Carry out the faults that replace the answer; True when the request goes on."""
        slow = SLOW_FAULT.fullmatch(fault)
        if slow:
            time.sleep(int(slow.group(1)) / 1000)
            if slow.group(2):
                return self.apply_fault(flavor, slow.group(2))
        elif fault in FAULT_MESSAGES:
            self.send_error_body(flavor, fault, FAULT_MESSAGES[fault])
            return False
        elif fault == "reset":
            self.reset()
            return False
        elif fault not in FAULTS:
            self.send_error_body(flavor, "invalid", f"unknown x-mock-fault {fault!r}")
            return False
        return True

    def answer(self, flavor: str, api: str, deployment: str | None, body: object, fault: str | None,
               query: dict) -> None:
        if not isinstance(body, dict):
            self.send_error_body(flavor, "invalid", "We could not parse the JSON body of your request.")
            return
        missing = missing_field(api, body, deployment)
        if missing:
            message = f"{missing}: Field required" if flavor == "anthropic" else f"Missing required parameter: '{missing}'."
            self.send_error_body(flavor, "invalid", message, "missing_required_parameter")
            return
        unsigned = api == "messages" and unsigned_thinking(body)
        if unsigned:
            self.send_error_body(flavor, "invalid", unsigned)
            return
        model = deployment or body["model"]
        tools = gemini_settings(body) if flavor == "gemini" else body
        reply = build_reply(self.server.state.next_id(), model, conversation(api, body), tools)
        sizes = self.headers.get("x-mock-piece-chars")  # e.g. "1,5,2": text delta lengths, cycled
        if sizes:
            reply = dataclasses.replace(reply, piece_sizes=tuple(max(1, int(n)) for n in sizes.split(",")))
        render_body, render_events = RENDERERS[api]
        if api == "gemini-stream" and query.get("alt") != "sse":
            self.send_error_body(flavor, "invalid", "this mock streams Gemini answers only with alt=sse")
            return
        if body.get("stream") or api == "gemini-stream":
            delay = int(self.headers.get("x-mock-chunk-delay-ms") or 0) / 1000
            events = render_events(reply, body)
            if self.headers.get("x-mock-usage-markers") == "omit":
                # Like servers that send usage only in the last chunk, not
                # `"usage": null` in every other one.
                events = [(name, {k: v for k, v in data.items() if not (k == "usage" and v is None)})
                          if isinstance(data, dict) else (name, data) for name, data in events]
            self.send_stream(events, fault, delay, flavor)
        elif fault == "bad-sse":
            self.send_bytes(200, b"{this is not json")
        else:
            self.send_bytes(200, json.dumps(render_body(reply, body)).encode(), fault=fault)


def model_list() -> dict:
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
                                       for m in OPENAI_MODELS]}


def unsigned_thinking(body: dict) -> str | None:
    """Anthropic's check with thinking on: an assistant turn that called a tool must start with its
    thinking block, signed over the thinking text as it was sent; the error message, else None."""
    if not thinking_enabled(body):
        return None
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if message.get("role") != "assistant" or not isinstance(content, list) or not content:
            continue
        blocks = [b for b in content if isinstance(b, dict)]
        for b in blocks:
            if b.get("type") == "thinking" and b.get("signature") != thinking_signature(b.get("thinking", "")):
                return f"messages.{i}.content.0: Invalid `signature` in `thinking` block"
        uses_tool = any(b.get("type") == "tool_use" for b in blocks)
        if uses_tool and blocks[0].get("type") not in ("thinking", "redacted_thinking"):
            return (f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block.")
    return None


def missing_field(api: str, body: dict, deployment: str | None) -> str | None:
    """The first required field that is absent (or, for messages, not a list)."""
    for field in REQUIRED_FIELDS[api]:
        absent = body.get(field) is None and not (field == "model" and deployment)
        if absent or (field == "messages" and not isinstance(body[field], list)):
            return field
    return None


def parse_json(raw: bytes) -> object:
    """The parsed body, or None when it is empty or not JSON."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class MockServer(ThreadingHTTPServer):
    request_queue_size = 128  # Envoy may open many upstream connections at once

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.state = MockState()

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients (and the reset faults) drop connections on purpose; that is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start(port: int = 0, host: str = "127.0.0.1") -> tuple[MockServer, int]:
    """Serve in a daemon thread; returns (server, bound port). Stop with server.shutdown()."""
    server = MockServer((host, port))
    threading.Thread(target=server.serve_forever, name="mock-provider", daemon=True).start()
    return server, server.server_address[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = MockServer((args.host, args.port))
    print(f"mock provider listening on {args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
