//! Provider errors in the client's error format. The provider's message is
//! kept; statuses change only where the client would misread them.

use super::str_of;
use crate::core::api::ClientFormat;
use serde_json::{json, Value};

/// The status a client sees for a provider error status.
pub fn client_status(status: u32) -> u32 {
    match status {
        401 | 403 => 502,
        529 => 503, // Anthropic's "overloaded"
        s => s,
    }
}

/// (status, body) for the client. Provider auth failures become 502: the
/// client's gateway key was fine, the gateway's provider key was not.
pub fn translate(client: ClientFormat, status: u32, upstream_body: &[u8]) -> (u32, Vec<u8>) {
    let v: Value = serde_json::from_slice(upstream_body).unwrap_or(Value::Null);
    let error = v.get("error").unwrap_or(&Value::Null);
    let message = str_of(error, "message")
        .map(String::from)
        .unwrap_or_else(|| format!("The provider answered HTTP {status}."));
    let status = client_status(status);
    // The provider's own text is not passed on for auth failures: it can
    // quote part of the gateway's provider key.
    let message = if status == 502 {
        "The provider refused the gateway's credentials.".to_string()
    } else {
        message
    };
    let body = match client {
        ClientFormat::OpenAi => {
            let (kind, code) = match status {
                400 | 404 | 413 | 422 => (
                    "invalid_request_error",
                    str_of(error, "code").or(str_of(error, "type")),
                ),
                429 => ("rate_limit_error", Some("rate_limit_exceeded")),
                _ => (
                    "server_error",
                    str_of(error, "code").or(str_of(error, "type")),
                ),
            };
            json!({"error": {"message": message, "type": kind, "param": error.get("param").cloned().unwrap_or(Value::Null), "code": code}})
        }
        ClientFormat::Anthropic => {
            let kind = match status {
                400 | 422 => "invalid_request_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    (status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_between_formats() {
        let anthropic =
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        let (status, body) = translate(ClientFormat::OpenAi, 429, anthropic);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, v["error"]["message"].as_str()),
            (429, Some("slow down"))
        );
        let openai = br#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let (status, body) = translate(ClientFormat::Anthropic, 401, openai);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 502);
        assert_eq!(v["type"], "error");
        assert!(!v["error"]["message"].as_str().unwrap().contains("bad key"));
        let (status, _) = translate(ClientFormat::OpenAi, 529, b"not json");
        assert_eq!(status, 503);
    }
}
