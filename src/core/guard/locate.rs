//! Where the text lives in each API's bodies.
//!
//! Requests: everything the model reads is scanned, which is every string in
//! the body (and every name in free-form maps) except an explicit list of
//! fields known not to reach the model as text: the model name, roles, type
//! tags, ids, URLs, base64 data and signatures, and credentials meant for a
//! provider's tool connectors. A field a provider adds later is scanned by
//! default. Message content, system prompts and instructions, tool names,
//! descriptions and JSON schemas (descriptions, enums, defaults, examples,
//! property names), tool call arguments and results, `messages[].name`,
//! `prediction`, response formats, documents and metadata are all visited.
//!
//! Answers: each client wire visits its generated text (message content and
//! text blocks, tool call arguments) with the helpers here
//! (`Inbound::reply_texts`).

use crate::core::api::Api;
use serde_json::{Map, Value};

/// Visits `v[key]` when it is a string.
pub(crate) fn text_field(v: &mut Value, key: &str, f: &mut dyn FnMut(&mut String)) {
    if let Some(Value::String(s)) = v.get_mut(key) {
        f(s);
    }
}

/// A string, or an array of parts/blocks whose `text` (or `content`) is visited.
pub(crate) fn content(v: Option<&mut Value>, f: &mut dyn FnMut(&mut String)) {
    match v {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                let kind = p
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("text")
                    .to_string();
                match kind.as_str() {
                    "text" | "input_text" | "output_text" => text_field(p, "text", f),
                    "tool_use" => strings(p.get_mut("input"), f),
                    "tool_result" => content(p.get_mut("content"), f),
                    _ => {} // images, files, audio
                }
            }
        }
        _ => {}
    }
}

/// Every string value inside (tool inputs are JSON objects).
fn strings(v: Option<&mut Value>, f: &mut dyn FnMut(&mut String)) {
    match v {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(items)) => items.iter_mut().for_each(|i| strings(Some(i), f)),
        Some(Value::Object(map)) => map.values_mut().for_each(|i| strings(Some(i), f)),
        _ => {}
    }
}

/// How the fields of an object are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// API structure: the allow-list applies, names are the API's own.
    Api,
    /// Free-form data (tool call inputs, schema defaults, enums, examples,
    /// metadata): every name and string is scanned.
    Data,
    /// A map from names the model reads to JSON schemas (`properties`).
    Names,
}

/// String (or string list) fields that never reach the model as text.
fn not_text(key: &str, text_source: bool) -> bool {
    match key {
        "model" | "role" | "type" | "object" | "status" | "detail" | "media_type" | "mime_type"
        | "signature" | "encrypted_content" | "file_data" | "image_url" | "url" => true,
        // Base64 images, audio and files; a text document's source is text.
        "data" => !text_source,
        _ => key == "id" || key.ends_with("_id") || key.ends_with("_ids") || key.ends_with("_url"),
    }
}

/// Subtrees that never reach the model: credentials the provider passes
/// to a tool connector (MCP servers).
fn not_for_the_model(key: &str) -> bool {
    matches!(key, "headers" | "authorization" | "authorization_token")
}

/// Fields whose value is free-form data.
fn data(key: &str, value: &Value) -> bool {
    match key {
        "default" | "examples" | "example" | "enum" | "const" | "metadata" | "variables" => true,
        // Anthropic tool_use input; Responses `input` is a list of items.
        "input" | "arguments" => value.is_object(),
        _ => false,
    }
}

/// Maps whose keys are property names (JSON schema).
fn names(key: &str) -> bool {
    matches!(
        key,
        "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
    )
}

fn is_strings(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    }
}

/// Visits the strings of `v` read in `mode`.
fn walk(v: &mut Value, mode: Mode, f: &mut dyn FnMut(&mut String), name: &mut String) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => {
            let mode = if mode == Mode::Names { Mode::Api } else { mode };
            for item in items {
                walk(item, mode, f, name);
            }
        }
        Value::Object(map) => walk_map(map, mode, &[], f, name),
        _ => {}
    }
}

/// Visits an object's fields, those named in `first` first (in that order,
/// so placeholders number the way a reader meets the values).
fn walk_map(
    map: &mut Map<String, Value>,
    mode: Mode,
    first: &[&str],
    f: &mut dyn FnMut(&mut String),
    name: &mut String,
) {
    let text_source = map.get("type").and_then(Value::as_str) == Some("text");
    let mut renamed: Vec<(String, String)> = Vec::new();
    let mut field = |key: &String, value: &mut Value, name: &mut String| {
        if mode != Mode::Api {
            // A name the model reads: redaction renames the field.
            name.clear();
            name.push_str(key);
            f(name);
            if name != key {
                renamed.push((key.clone(), name.clone()));
            }
        }
        let next = match mode {
            Mode::Data => Mode::Data,
            Mode::Names => Mode::Api,
            Mode::Api => {
                if not_for_the_model(key) || (not_text(key, text_source) && is_strings(value)) {
                    return;
                }
                if data(key, value) {
                    Mode::Data
                } else if names(key) && value.is_object() {
                    Mode::Names
                } else {
                    Mode::Api
                }
            }
        };
        walk(value, next, f, name);
    };
    for key in first {
        if let Some(v) = map.get_mut(*key) {
            field(&(*key).to_string(), v, name);
        }
    }
    for (k, v) in map.iter_mut() {
        if !first.contains(&k.as_str()) {
            field(k, v, name);
        }
    }
    for (old, new) in renamed {
        if let Some(v) = map.remove(&old) {
            // A clash with an existing name drops the field: never keep the
            // unredacted name.
            if !map.contains_key(&new) {
                map.insert(new, v);
            }
        }
    }
}

/// Visits the text of a request body: everything the model reads.
pub fn request_texts(api: Api, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let mut name = String::new();
    match body {
        Value::Object(map) => walk_map(
            map,
            Mode::Api,
            api.inbound().conversation_fields(),
            f,
            &mut name,
        ),
        other => walk(other, Mode::Api, f, &mut name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(api: Api, mut body: Value, request: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut f = |s: &mut String| out.push(s.clone());
        if request {
            request_texts(api, &mut body, &mut f);
        } else {
            api.inbound().reply_texts(&mut body, &mut f);
        }
        out
    }

    #[test]
    fn visits_text_not_keys_or_images() {
        let chat = json!({"model": "secret-model", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:x", "detail": "auto"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"q\":\"b\"}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "c"}]});
        assert_eq!(
            collect(Api::ChatCompletions, chat, true),
            ["a", "{\"q\":\"b\"}", "f", "c"]
        );
        let msgs = json!({"system": [{"type": "text", "text": "s"}], "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": "i"}}]}]});
        assert_eq!(
            collect(Api::Messages, msgs, true),
            ["s", "r", "x", "i", "n"]
        );
        let resp = json!({"instructions": "s", "input": [{"role": "user", "content": [{"type": "input_text", "text": "u"}]},
            {"type": "function_call_output", "call_id": "c", "output": "o"}]});
        assert_eq!(collect(Api::Responses, resp, true), ["s", "u", "o"]);
        let out = json!({"choices": [{"message": {"content": "x"}}]});
        assert_eq!(collect(Api::ChatCompletions, out, false), ["x"]);
    }
}

/// Every field a model reads, in each API's requests: a key there blocks
/// the request (the default for secrets) or, set to redact, is replaced in
/// place; the fields that never reach the model as text are left alone.
#[cfg(test)]
mod model_readable_fields {
    use crate::core::api::Api;
    use crate::core::guard::{GuardrailConfig, Guardrails};
    use serde_json::{json, Value};

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    /// (API, body with `KEY` in the field, JSON pointer to the field).
    fn cases() -> Vec<(Api, Value, &'static str)> {
        let schema = |at: &str| {
            let mut s = json!({"type": "object", "properties": {"city": {"type": "string", "description": "a city"}}, "required": ["city"]});
            match at {
                "description" => {
                    s["properties"]["city"]["description"] = json!(format!("the {KEY} city"))
                }
                "enum" => s["properties"]["city"]["enum"] = json!(["Paris", KEY]),
                "default" => s["properties"]["city"]["default"] = json!(KEY),
                "examples" => s["properties"]["city"]["examples"] = json!([{"city": KEY}]),
                "title" => s["title"] = json!(KEY),
                _ => {}
            }
            s
        };
        let chat_tool = |f: Value| json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": f}]});
        let responses_tool = |t: Value| json!({"model": "gpt-4o", "input": "hi", "tools": [t]});
        let messages_tool = |t: Value| json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tools": [t]});
        let tool = |name: &str, description: &str, schema: Value| json!({"name": name, "description": description, "parameters": schema});
        let k = KEY;
        vec![
            // OpenAI Chat Completions.
            (
                Api::ChatCompletions,
                chat_tool(tool("f", &format!("use {k}"), schema(""))),
                "/tools/0/function/description",
            ),
            (
                Api::ChatCompletions,
                chat_tool(tool(k, "d", schema(""))),
                "/tools/0/function/name",
            ),
            (
                Api::ChatCompletions,
                chat_tool(tool("f", "d", schema("description"))),
                "/tools/0/function/parameters/properties/city/description",
            ),
            (
                Api::ChatCompletions,
                chat_tool(tool("f", "d", schema("enum"))),
                "/tools/0/function/parameters/properties/city/enum/1",
            ),
            (
                Api::ChatCompletions,
                chat_tool(tool("f", "d", schema("default"))),
                "/tools/0/function/parameters/properties/city/default",
            ),
            (
                Api::ChatCompletions,
                chat_tool(tool("f", "d", schema("examples"))),
                "/tools/0/function/parameters/properties/city/examples/0/city",
            ),
            (
                Api::ChatCompletions,
                chat_tool(tool("f", "d", schema("title"))),
                "/tools/0/function/parameters/title",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "name": k, "content": "hi"}]}),
                "/messages/0/name",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "prediction": {"type": "content", "content": k}}),
                "/prediction/content",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "prediction": {"type": "content", "content": [{"type": "text", "text": k}]}}),
                "/prediction/content/0/text",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema("description")}}}),
                "/response_format/json_schema/schema/properties/city/description",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "r", "description": k, "schema": schema("")}}}),
                "/response_format/json_schema/description",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": format!("{{\"k\":\"{k}\"}}")}}]}]}),
                "/messages/0/tool_calls/0/function/arguments",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "tool", "tool_call_id": "c", "content": k}]}),
                "/messages/0/content",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "developer", "content": [{"type": "text", "text": k}]}]}),
                "/messages/0/content/0/text",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "metadata": {"note": k}}),
                "/metadata/note",
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "user": k}),
                "/user",
            ),
            // OpenAI Responses.
            (
                Api::Responses,
                json!({"model": "gpt-4o", "input": "hi", "instructions": k}),
                "/instructions",
            ),
            (
                Api::Responses,
                responses_tool(
                    json!({"type": "function", "name": "f", "description": k, "parameters": schema("")}),
                ),
                "/tools/0/description",
            ),
            (
                Api::Responses,
                responses_tool(json!({"type": "function", "name": k, "parameters": schema("")})),
                "/tools/0/name",
            ),
            (
                Api::Responses,
                responses_tool(
                    json!({"type": "function", "name": "f", "parameters": schema("enum")}),
                ),
                "/tools/0/parameters/properties/city/enum/1",
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "input": "hi", "text": {"format": {"type": "json_schema", "name": "r", "schema": schema("default")}}}),
                "/text/format/schema/properties/city/default",
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": k}]}),
                "/input/0/arguments",
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "input": [{"type": "function_call_output", "call_id": "c", "output": k}]}),
                "/input/0/output",
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_text", "text": k}]}]}),
                "/input/0/content/0/text",
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "input": "hi", "prompt": {"id": "pmpt_1", "variables": {"who": k}}}),
                "/prompt/variables/who",
            ),
            // Anthropic Messages.
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "system": k, "messages": [{"role": "user", "content": "hi"}]}),
                "/system",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "system": [{"type": "text", "text": k}], "messages": [{"role": "user", "content": "hi"}]}),
                "/system/0/text",
            ),
            (
                Api::Messages,
                messages_tool(json!({"name": "f", "description": k, "input_schema": schema("")})),
                "/tools/0/description",
            ),
            (
                Api::Messages,
                messages_tool(json!({"name": k, "input_schema": schema("")})),
                "/tools/0/name",
            ),
            (
                Api::Messages,
                messages_tool(json!({"name": "f", "input_schema": schema("examples")})),
                "/tools/0/input_schema/properties/city/examples/0/city",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": {"deep": [k]}}}]}]}),
                "/messages/0/content/0/input/q/deep/0",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": k}]}]}),
                "/messages/0/content/0/content",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": k}]}]}]}),
                "/messages/0/content/0/content/0/text",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": k}}]}]}),
                "/messages/0/content/0/source/data",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}, "title": k}]}]}),
                "/messages/0/content/0/title",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}, "context": k}]}]}),
                "/messages/0/content/0/context",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "tool", "name": k}}),
                "/tool_choice/name",
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": k}}),
                "/metadata/user_id",
            ),
        ]
    }

    #[test]
    fn a_key_in_any_field_the_model_reads_blocks_the_request() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let policy = g.policy(None, None);
        for (api, mut body, at) in cases() {
            assert!(body.pointer(at).is_some(), "{at}");
            let outcome = g.check_request(api, &mut body, &policy);
            let blocked = outcome.blocked.map(|b| (b.guardrail, b.kind));
            assert_eq!(
                blocked,
                Some(("secrets", "aws_access_key".to_string())),
                "{api:?} {at}"
            );
        }
    }

    #[test]
    fn a_key_in_any_field_the_model_reads_is_redacted_in_place() {
        let config: GuardrailConfig =
            serde_json::from_value(json!({"secrets": {"input": "redact"}})).unwrap();
        let g = Guardrails::new(&config).unwrap();
        let policy = g.policy(None, None);
        for (api, mut body, at) in cases() {
            let before = body.clone();
            let outcome = g.check_request(api, &mut body, &policy);
            assert!(outcome.changed && outcome.blocked.is_none(), "{api:?} {at}");
            let field = body.pointer(at).and_then(Value::as_str).unwrap_or("");
            assert!(
                field.contains("[AWS_ACCESS_KEY_1]") && !field.contains(KEY),
                "{api:?} {at}: {field}"
            );
            // Nothing else changed.
            let mut expected = before;
            if let Some(v) = expected.pointer_mut(at) {
                *v = Value::String(field.to_string());
            }
            assert_eq!(body, expected, "{api:?} {at}");
        }
    }

    #[test]
    fn property_names_are_read_and_renamed() {
        let config: GuardrailConfig =
            serde_json::from_value(json!({"secrets": {"input": "redact"}})).unwrap();
        let g = Guardrails::new(&config).unwrap();
        let policy = g.policy(None, None);
        let mut body = json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {KEY: {"type": "string"}}, "required": [KEY]}}]});
        let outcome = g.check_request(Api::Messages, &mut body, &policy);
        assert!(outcome.changed);
        let schema = &body["tools"][0]["input_schema"];
        assert_eq!(
            schema["properties"],
            json!({"[AWS_ACCESS_KEY_1]": {"type": "string"}})
        );
        assert_eq!(schema["required"], json!(["[AWS_ACCESS_KEY_1]"]));
        let mut body = json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {KEY: 1}}]}]});
        g.check_request(Api::Messages, &mut body, &policy);
        assert_eq!(
            body["messages"][0]["content"][0]["input"],
            json!({"[AWS_ACCESS_KEY_1]": 1})
        );
    }

    #[test]
    fn fields_that_never_reach_the_model_are_left_alone() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let policy = g.policy(None, None);
        let k = KEY;
        let bodies = [
            (
                Api::ChatCompletions,
                json!({"model": k, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{k}")}}]},
                {"role": "tool", "tool_call_id": k, "content": "ok"}]}),
            ),
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": k, "format": "wav"}},
                {"type": "file", "file": {"file_data": k, "file_id": k, "filename": "a.pdf"}}]}]}),
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "previous_response_id": k, "input": [{"type": "input_image", "image_url": format!("https://x.example/{k}")},
                {"type": "reasoning", "id": k, "encrypted_content": k, "summary": []}],
                "tools": [{"type": "mcp", "server_label": "s", "server_url": format!("https://mcp.example/{k}"), "headers": {"Authorization": format!("Bearer {k}")}}]}),
            ),
            (
                Api::Messages,
                json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": k}},
                {"type": "document", "source": {"type": "url", "url": format!("https://x.example/{k}")}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": k}, {"type": "redacted_thinking", "data": k}]}],
                "mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m", "authorization_token": k}]}),
            ),
        ];
        for (api, mut body) in bodies {
            let before = body.clone();
            let outcome = g.check_request(api, &mut body, &policy);
            assert!(
                outcome.blocked.is_none() && !outcome.changed,
                "{api:?}: {outcome:?}"
            );
            assert_eq!(body, before);
        }
    }
}
