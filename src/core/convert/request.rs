//! Requests: each client API read into a `Conversation`, and a
//! `Conversation` written for Chat Completions or Messages upstreams.

use super::{
    chat_tool_calls, joined_text, set, str_of, Conversation, Message, Part, Role, Tool, ToolChoice,
    Translation, DEFAULT_MAX_TOKENS,
};
use crate::core::api::Api;
use crate::core::error::GatewayError;
use serde_json::{json, Map, Value};

fn bad(msg: &str) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Translates a client body for the upstream API. Same-API requests only get
/// `stream_options.include_usage` added for chat streams.
pub fn translate(
    client: Api,
    upstream: Api,
    body: &Value,
    model: &str,
) -> Result<(Value, Translation), GatewayError> {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let client_wants_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let translation = Translation {
        client,
        upstream,
        stream,
        client_wants_usage,
    };
    if client == upstream {
        let mut out = body.clone();
        if let Some(o) = out.as_object_mut() {
            o.insert("model".into(), Value::String(model.into()));
            if stream && upstream == Api::ChatCompletions {
                o.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        return Ok((out, translation));
    }
    let conversation = match client {
        Api::ChatCompletions => from_chat(body)?,
        Api::Messages => from_messages(body)?,
        Api::Responses => from_responses(body)?,
        Api::Models => return Err(bad("model listing is not translated")),
    };
    let out = match upstream {
        Api::ChatCompletions => to_chat(&conversation, model),
        Api::Messages => to_messages(&conversation, model),
        _ => {
            return Err(GatewayError::Internal(
                "no translation to this upstream API",
            ))
        }
    };
    Ok((out, translation))
}

// ---- reading ----

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn chat_parts(content: &Value) -> Result<Vec<Part>, GatewayError> {
    let mut out = Vec::new();
    match content {
        Value::String(s) => out.push(Part::Text(s.clone())),
        Value::Array(parts) => {
            for p in parts {
                match str_of(p, "type") {
                    Some("text") => out.push(Part::Text(str_of(p, "text").unwrap_or_default().into())),
                    Some("image_url") => {
                        let url = p.pointer("/image_url/url").and_then(Value::as_str).ok_or_else(|| bad("image_url without url"))?;
                        out.push(Part::Image { url: url.into() });
                    }
                    Some(other) => {
                        return Err(GatewayError::BadRequest(format!(
                            "Content parts of type `{other}` cannot be translated for this model's provider."
                        )))
                    }
                    None => return Err(bad("content part without type")),
                }
            }
        }
        Value::Null => {}
        _ => return Err(bad("message content must be a string or an array of parts")),
    }
    Ok(out)
}

fn common(body: &Value, conv: &mut Conversation) {
    conv.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    conv.temperature = body.get("temperature").and_then(Value::as_f64);
    conv.top_p = body.get("top_p").and_then(Value::as_f64);
    conv.parallel_tool_calls = body.get("parallel_tool_calls").and_then(Value::as_bool);
    conv.user = str_of(body, "user").map(String::from);
    conv.stop = match body.get("stop").or_else(|| body.get("stop_sequences")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
}

fn openai_tools(tools: Option<&Value>, nested: bool) -> Vec<Tool> {
    let Some(Value::Array(tools)) = tools else {
        return Vec::new();
    };
    tools
        .iter()
        .filter(|t| str_of(t, "type").unwrap_or("function") == "function")
        .filter_map(|t| {
            let f = if nested { t.get("function")? } else { t };
            Some(Tool {
                name: str_of(f, "name")?.into(),
                description: str_of(f, "description").map(String::from),
                parameters: f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn openai_tool_choice(v: Option<&Value>) -> Option<ToolChoice> {
    match v? {
        Value::String(s) => match s.as_str() {
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            _ => Some(ToolChoice::Auto),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)?;
            Some(ToolChoice::Named(name.into()))
        }
        _ => None,
    }
}

fn schema_format(format: &Value, conv: &mut Conversation) {
    match str_of(format, "type") {
        Some("json_schema") => {
            let spec = format.get("json_schema").unwrap_or(format);
            conv.json_schema = Some(json!({
                "name": str_of(spec, "name").unwrap_or("output"),
                "schema": spec.get("schema").cloned().unwrap_or(json!({})),
                "strict": spec.get("strict").and_then(Value::as_bool).unwrap_or(false),
            }));
        }
        Some("json_object") => conv.json_object = true,
        _ => {}
    }
}

pub fn from_chat(body: &Value) -> Result<Conversation, GatewayError> {
    let mut conv = Conversation::default();
    common(body, &mut conv);
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad(
            "`n` greater than 1 cannot be served by this model's provider.",
        ));
    }
    conv.max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    conv.tools = openai_tools(body.get("tools"), true);
    conv.tool_choice = openai_tool_choice(body.get("tool_choice"));
    if let Some(format) = body.get("response_format") {
        schema_format(format, &mut conv);
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Missing required parameter: `messages`."))?;
    for m in messages {
        let content = m.get("content").unwrap_or(&Value::Null);
        match str_of(m, "role") {
            Some("system") | Some("developer") => conv.system.push(text_of(content)),
            Some("user") => conv.messages.push(Message {
                role: Role::User,
                parts: chat_parts(content)?,
            }),
            Some("assistant") => {
                let mut parts = chat_parts(content)?;
                parts.extend(chat_tool_calls(m));
                conv.messages.push(Message {
                    role: Role::Assistant,
                    parts,
                });
            }
            Some("tool") => conv.messages.push(Message {
                role: Role::User,
                parts: vec![Part::ToolResult {
                    id: str_of(m, "tool_call_id").unwrap_or_default().into(),
                    content: text_of(content),
                    is_error: false,
                }],
            }),
            _ => {
                return Err(bad(
                    "every message needs a role of system, developer, user, assistant or tool",
                ))
            }
        }
    }
    Ok(conv)
}

fn anthropic_parts(content: &Value, role: Role) -> Result<Vec<Part>, GatewayError> {
    let blocks = match content {
        Value::String(s) => return Ok(vec![Part::Text(s.clone())]),
        Value::Array(b) => b,
        _ => {
            return Err(bad(
                "message content must be a string or an array of blocks",
            ))
        }
    };
    let mut out = Vec::new();
    for b in blocks {
        match str_of(b, "type") {
            Some("text") => out.push(Part::Text(str_of(b, "text").unwrap_or_default().into())),
            Some("image") => {
                let source = b.get("source").unwrap_or(&Value::Null);
                let url = match str_of(source, "type") {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        str_of(source, "media_type").unwrap_or("image/png"),
                        str_of(source, "data").unwrap_or_default()
                    ),
                    _ => str_of(source, "url").unwrap_or_default().into(),
                };
                out.push(Part::Image { url });
            }
            Some("tool_use") if role == Role::Assistant => out.push(Part::ToolCall {
                id: str_of(b, "id").unwrap_or_default().into(),
                name: str_of(b, "name").unwrap_or_default().into(),
                arguments: b.get("input").map_or_else(|| "{}".into(), Value::to_string),
            }),
            Some("tool_result") => out.push(Part::ToolResult {
                id: str_of(b, "tool_use_id").unwrap_or_default().into(),
                content: text_of(b.get("content").unwrap_or(&Value::Null)),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            }),
            // Thinking blocks are the model's own and are not sent to other providers.
            Some("thinking") | Some("redacted_thinking") => {}
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                "Content blocks of type `{other}` cannot be translated for this model's provider."
            )))
            }
            None => return Err(bad("content block without type")),
        }
    }
    Ok(out)
}

pub fn from_messages(body: &Value) -> Result<Conversation, GatewayError> {
    let mut conv = Conversation::default();
    common(body, &mut conv);
    conv.max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    match body.get("system") {
        Some(Value::String(s)) => conv.system.push(s.clone()),
        Some(blocks @ Value::Array(_)) => conv.system.push(text_of(blocks)),
        _ => {}
    }
    conv.tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Tool {
                name: str_of(t, "name")?.into(),
                description: str_of(t, "description").map(String::from),
                parameters: t
                    .get("input_schema")
                    .cloned()
                    .unwrap_or(json!({"type": "object"})),
            })
        })
        .collect();
    conv.tool_choice = body
        .get("tool_choice")
        .and_then(|c| match str_of(c, "type")? {
            "any" => Some(ToolChoice::Required),
            "none" => Some(ToolChoice::None),
            "tool" => Some(ToolChoice::Named(str_of(c, "name")?.into())),
            _ => Some(ToolChoice::Auto),
        });
    if let Some(false) = body
        .pointer("/tool_choice/disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d)
    {
        conv.parallel_tool_calls = Some(false);
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Missing required parameter: `messages`."))?;
    for m in messages {
        let role = match str_of(m, "role") {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return Err(bad("every message needs a role of user or assistant")),
        };
        conv.messages.push(Message {
            role,
            parts: anthropic_parts(m.get("content").unwrap_or(&Value::Null), role)?,
        });
    }
    Ok(conv)
}

pub fn from_responses(body: &Value) -> Result<Conversation, GatewayError> {
    let mut conv = Conversation::default();
    common(body, &mut conv);
    conv.max_tokens = body.get("max_output_tokens").and_then(Value::as_u64);
    if let Some(instructions) = str_of(body, "instructions") {
        conv.system.push(instructions.into());
    }
    conv.tools = openai_tools(body.get("tools"), false);
    conv.tool_choice = openai_tool_choice(body.get("tool_choice"));
    if let Some(format) = body.pointer("/text/format") {
        schema_format(format, &mut conv);
    }
    match body.get("input") {
        Some(Value::String(s)) => conv.messages.push(Message {
            role: Role::User,
            parts: vec![Part::Text(s.clone())],
        }),
        Some(Value::Array(items)) => {
            for item in items {
                responses_item(item, &mut conv)?;
            }
        }
        _ => return Err(bad("Missing required parameter: `input`.")),
    }
    Ok(conv)
}

fn responses_item(item: &Value, conv: &mut Conversation) -> Result<(), GatewayError> {
    let push = |conv: &mut Conversation, role: Role, part: Part| match conv.messages.last_mut() {
        Some(last) if last.role == role => last.parts.push(part),
        _ => conv.messages.push(Message {
            role,
            parts: vec![part],
        }),
    };
    match str_of(item, "type").unwrap_or("message") {
        "message" => {
            let content = item.get("content").unwrap_or(&Value::Null);
            let mut parts = Vec::new();
            match content {
                Value::String(s) => parts.push(Part::Text(s.clone())),
                Value::Array(blocks) => {
                    for b in blocks {
                        match str_of(b, "type") {
                            Some("input_text") | Some("output_text") | Some("text") => {
                                parts.push(Part::Text(str_of(b, "text").unwrap_or_default().into()))
                            }
                            Some("input_image") => parts.push(Part::Image {
                                url: str_of(b, "image_url").ok_or_else(|| bad("input_image without image_url"))?.into(),
                            }),
                            Some(other) => {
                                return Err(GatewayError::BadRequest(format!(
                                    "Input content of type `{other}` cannot be translated for this model's provider."
                                )))
                            }
                            None => return Err(bad("input content without type")),
                        }
                    }
                }
                _ => return Err(bad("input message content must be a string or an array")),
            }
            match str_of(item, "role") {
                Some("system") | Some("developer") => conv.system.push(text_of(content)),
                Some("assistant") => parts
                    .into_iter()
                    .for_each(|p| push(conv, Role::Assistant, p)),
                _ => parts.into_iter().for_each(|p| push(conv, Role::User, p)),
            }
        }
        "function_call" => push(
            conv,
            Role::Assistant,
            Part::ToolCall {
                id: str_of(item, "call_id").unwrap_or_default().into(),
                name: str_of(item, "name").unwrap_or_default().into(),
                arguments: str_of(item, "arguments").unwrap_or("{}").into(),
            },
        ),
        "function_call_output" => push(
            conv,
            Role::User,
            Part::ToolResult {
                id: str_of(item, "call_id").unwrap_or_default().into(),
                content: match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => text_of(other),
                    None => String::new(),
                },
                is_error: false,
            },
        ),
        // Reasoning items belong to the model that made them.
        "reasoning" => {}
        other => {
            return Err(GatewayError::BadRequest(format!(
                "Input items of type `{other}` cannot be translated for this model's provider."
            )))
        }
    }
    Ok(())
}

// ---- writing ----

fn chat_content(parts: &[Part]) -> Value {
    let texts: Vec<&Part> = parts
        .iter()
        .filter(|p| matches!(p, Part::Text(_) | Part::Image { .. }))
        .collect();
    if let [Part::Text(t)] = texts.as_slice() {
        return Value::String(t.clone());
    }
    Value::Array(
        texts
            .iter()
            .map(|p| match p {
                Part::Image { url } => json!({"type": "image_url", "image_url": {"url": url}}),
                Part::Text(t) => json!({"type": "text", "text": t}),
                _ => Value::Null,
            })
            .collect(),
    )
}

pub fn to_chat(conv: &Conversation, model: &str) -> Value {
    let mut messages = Vec::new();
    if !conv.system.is_empty() {
        messages.push(json!({"role": "system", "content": conv.system.join("\n\n")}));
    }
    for m in &conv.messages {
        let results: Vec<&Part> = m
            .parts
            .iter()
            .filter(|p| matches!(p, Part::ToolResult { .. }))
            .collect();
        for r in &results {
            if let Part::ToolResult {
                id,
                content,
                is_error,
            } = r
            {
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
        }
        let has_other = m
            .parts
            .iter()
            .any(|p| !matches!(p, Part::ToolResult { .. }));
        if !has_other {
            continue;
        }
        match m.role {
            Role::User => messages.push(json!({"role": "user", "content": chat_content(&m.parts)})),
            Role::Assistant => {
                let calls: Vec<Value> = m
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall { id, name, arguments } => {
                            Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
                        }
                        _ => None,
                    })
                    .collect();
                let text = joined_text(&m.parts);
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    set(&mut msg, "tool_calls", Value::Array(calls));
                }
                messages.push(msg);
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.into()));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = conv.max_tokens {
        out.insert("max_completion_tokens".into(), n.into());
    }
    insert_opt(&mut out, "temperature", conv.temperature.map(Value::from));
    insert_opt(&mut out, "top_p", conv.top_p.map(Value::from));
    if !conv.stop.is_empty() {
        out.insert("stop".into(), json!(conv.stop));
    }
    if !conv.tools.is_empty() {
        let tools: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        insert_opt(
            &mut out,
            "parallel_tool_calls",
            conv.parallel_tool_calls.map(Value::from),
        );
    }
    insert_opt(
        &mut out,
        "tool_choice",
        conv.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
        }),
    );
    if let Some(schema) = &conv.json_schema {
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": schema}),
        );
    } else if conv.json_object {
        out.insert("response_format".into(), json!({"type": "json_object"}));
    }
    insert_opt(&mut out, "user", conv.user.clone().map(Value::String));
    if conv.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(out)
}

fn insert_opt(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        out.insert(key.into(), v);
    }
}

fn anthropic_image(url: &str) -> Value {
    match url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((media_type, data)) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

pub fn to_messages(conv: &Conversation, model: &str) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for m in &conv.messages {
        let blocks: Vec<Value> = m
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
            .map(|p| match p {
                Part::Text(t) => json!({"type": "text", "text": t}),
                Part::Image { url } => anthropic_image(url),
                Part::ToolCall { id, name, arguments } => json!({
                    "type": "tool_use", "id": id, "name": name,
                    "input": serde_json::from_str::<Value>(arguments).ok().filter(Value::is_object).unwrap_or_else(|| json!({})),
                }),
                Part::ToolResult { id, content, is_error } => {
                    json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error})
                }
            })
            .collect();
        if blocks.is_empty() {
            continue;
        }
        let role = if m.role == Role::User {
            "user"
        } else {
            "assistant"
        };
        // Anthropic wants alternating roles: merge consecutive same-role turns
        // (e.g. several OpenAI `tool` messages become one user turn).
        match messages.last_mut() {
            Some(last) if last.get("role").and_then(Value::as_str) == Some(role) => {
                if let Some(existing) = last.get_mut("content").and_then(Value::as_array_mut) {
                    existing.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.into()));
    out.insert("messages".into(), Value::Array(messages));
    out.insert(
        "max_tokens".into(),
        conv.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    if !conv.system.is_empty() {
        out.insert("system".into(), Value::String(conv.system.join("\n\n")));
    }
    insert_opt(&mut out, "temperature", conv.temperature.map(Value::from));
    insert_opt(&mut out, "top_p", conv.top_p.map(Value::from));
    if !conv.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(conv.stop));
    }
    if !conv.tools.is_empty() {
        let tools: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    set(&mut tool, "description", Value::String(d.clone()));
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &conv.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Named(n)) => Some(json!({"type": "tool", "name": n})),
        None if conv.parallel_tool_calls == Some(false) && !conv.tools.is_empty() => {
            Some(json!({"type": "auto"}))
        }
        None => None,
    };
    if conv.parallel_tool_calls == Some(false) {
        if let Some(c) = choice.as_mut().filter(|c| c["type"] != "none") {
            set(c, "disable_parallel_tool_use", Value::Bool(true));
        }
    }
    insert_opt(&mut out, "tool_choice", choice);
    if let Some(user) = &conv.user {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if conv.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_to_messages_with_tools_images_and_results() {
        let chat = json!({
            "model": "x", "max_tokens": 50, "temperature": 0.3, "stop": "END", "stream": true,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false
        });
        let (out, t) = translate(Api::ChatCompletions, Api::Messages, &chat, "claude-x").unwrap();
        assert!(t.rewrites());
        assert_eq!(out["system"], "be brief\n\nuse tools");
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(
            out["messages"][0]["content"][1]["source"]["media_type"],
            "image/png"
        );
        assert_eq!(out["messages"][1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(out["messages"][1]["content"][1]["name"], "time");
        // Both tool results in one user turn.
        assert_eq!(out["messages"][2]["role"], "user");
        assert_eq!(
            out["messages"][2]["content"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(out["stream"], true);
    }

    #[test]
    fn messages_to_chat_and_default_max_tokens() {
        let msgs = json!({
            "model": "x", "max_tokens": 10, "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"}
        });
        let (out, _) = translate(Api::Messages, Api::ChatCompletions, &msgs, "gpt-4o").unwrap();
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(
            out["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(
            out["messages"][3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "42"})
        );
        assert_eq!(
            out["messages"][4]["content"][0]["image_url"]["url"],
            "https://x/y.png"
        );
        assert_eq!(out["max_completion_tokens"], 10);
        assert_eq!(out["tool_choice"]["function"]["name"], "f");
        let (out, _) = translate(
            Api::ChatCompletions,
            Api::Messages,
            &json!({"messages": [{"role": "user", "content": "x"}]}),
            "c",
        )
        .unwrap();
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn responses_to_chat_and_messages() {
        let resp = json!({
            "model": "x", "instructions": "sys", "max_output_tokens": 7,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "https://i"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"}
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}}
        });
        let (chat, _) = translate(Api::Responses, Api::ChatCompletions, &resp, "m").unwrap();
        assert_eq!(chat["messages"][0]["content"], "sys");
        assert_eq!(chat["messages"][2]["tool_calls"][0]["id"], "c1");
        assert_eq!(chat["messages"][3]["role"], "tool");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "out");
        assert_eq!(chat["tools"][0]["function"]["name"], "f");
        let (msgs, _) = translate(Api::Responses, Api::Messages, &resp, "c").unwrap();
        assert_eq!(msgs["max_tokens"], 7);
        assert_eq!(msgs["messages"][2]["content"][0]["type"], "tool_result");
    }

    #[test]
    fn refuses_what_cannot_be_translated() {
        let n2 = json!({"n": 2, "messages": [{"role": "user", "content": "x"}]});
        assert!(translate(Api::ChatCompletions, Api::Messages, &n2, "c").is_err());
        let audio = json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]});
        assert!(translate(Api::ChatCompletions, Api::Messages, &audio, "c").is_err());
        assert!(translate(
            Api::Messages,
            Api::ChatCompletions,
            &json!({"model": "x"}),
            "c"
        )
        .is_err());
    }

    #[test]
    fn same_api_chat_stream_asks_for_usage() {
        let body = json!({"model": "a", "stream": true, "messages": []});
        let (out, t) = translate(Api::ChatCompletions, Api::ChatCompletions, &body, "b").unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["model"], "b");
        assert!(
            t.rewrites(),
            "the usage chunk must be dropped for this client"
        );
        let body = json!({"model": "a", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
        let (_, t) = translate(Api::ChatCompletions, Api::ChatCompletions, &body, "b").unwrap();
        assert!(!t.rewrites());
    }
}
