//! Parsing a client request body: parsed once, validated, model rewritten.

use super::api::Api;
use super::error::GatewayError;
use super::json;
use serde_json::Value;

/// Longer model names are refused: no provider has one, and every record
/// of the request (usage report, trace, stats) carries the name.
pub const MAX_MODEL_LEN: usize = 256;

/// A parsed LLM request body.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub body: Value,
    pub model: String,
    pub stream: bool,
    /// False when the model came from an Azure deployment path.
    pub model_in_body: bool,
    /// The body was changed in place (e.g. redacted) and must be re-sent.
    pub modified: bool,
}

fn stream_flag(object: &serde_json::Map<String, Value>) -> Result<bool, GatewayError> {
    match object.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(GatewayError::BadRequest(
            "`stream` must be a boolean.".into(),
        )),
    }
}

impl LlmRequest {
    /// Parses a JSON object with a string `model` (or, for Azure-style
    /// paths, `default_model` from the deployment). Errors name the problem,
    /// never echo the body.
    pub fn parse(bytes: &[u8], default_model: Option<&str>) -> Result<LlmRequest, GatewayError> {
        if bytes.is_empty() {
            return Err(GatewayError::BadRequest(
                "Request body is empty: expected a JSON object.".into(),
            ));
        }
        // Strict: the provider must read the same fields the filter checked.
        let body: Value = json::parse_strict(bytes).map_err(|e| {
            GatewayError::BadRequest(format!("Request body is not valid JSON: {e}."))
        })?;
        let Some(object) = body.as_object() else {
            return Err(GatewayError::BadRequest(
                "Request body must be a JSON object.".into(),
            ));
        };
        let stream = stream_flag(object)?;
        let (model, model_in_body) = match (object.get("model"), default_model) {
            (Some(Value::String(m)), _) if m.len() > MAX_MODEL_LEN => {
                return Err(GatewayError::BadRequest(format!(
                    "`model` is longer than {MAX_MODEL_LEN} bytes."
                )))
            }
            (Some(Value::String(m)), _) if !m.is_empty() => (m.clone(), true),
            (Some(_), _) => {
                return Err(GatewayError::BadRequest(
                    "`model` must be a non-empty string.".into(),
                ))
            }
            (None, Some(model)) if model.len() <= MAX_MODEL_LEN => (model.to_string(), false),
            (None, Some(_)) => {
                return Err(GatewayError::BadRequest(format!(
                    "The deployment name is longer than {MAX_MODEL_LEN} bytes."
                )))
            }
            (None, None) => {
                return Err(GatewayError::BadRequest(
                    "Missing required parameter: `model`.".into(),
                ))
            }
        };
        Ok(LlmRequest {
            body,
            model,
            stream,
            model_in_body,
            modified: false,
        })
    }

    /// The body to send upstream with `model` replaced; `None` when the
    /// original bytes can go unchanged.
    pub fn rewritten_for(&mut self, upstream_model: &str) -> Option<Vec<u8>> {
        if upstream_model == self.model && self.model_in_body && !self.modified {
            return None;
        }
        let object = self.body.as_object_mut()?;
        object.insert("model".into(), Value::String(upstream_model.into()));
        serde_json::to_vec(&self.body).ok()
    }
}

/// Request parameters the trace conventions record and budgets reserve by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestParams {
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stream: bool,
}

impl LlmRequest {
    /// The request's parameters, read once for traces and budgets.
    pub fn params(&self, api: Api) -> RequestParams {
        RequestParams {
            max_tokens: api.inbound().max_output_tokens(&self.body),
            temperature: self.body.get("temperature").and_then(Value::as_f64),
            top_p: self.body.get("top_p").and_then(Value::as_f64),
            stream: self.stream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_and_stream() {
        let r =
            LlmRequest::parse(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#, None).unwrap();
        assert_eq!((r.model.as_str(), r.stream), ("gpt-4o", true));
        let r = LlmRequest::parse(br#"{"model":"m","stream":null}"#, None).unwrap();
        assert!(!r.stream);
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [
            &b""[..],
            b"{",
            b"[1]",
            br#"{"messages":[]}"#,
            br#"{"model":5}"#,
            br#"{"model":""}"#,
            br#"{"model":"m","stream":"yes"}"#,
            br#"{"model":"gpt-5.5","messages":[],"model":"gpt-4o"}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#,
            b"{\"model\":\"\xff\"}",
        ] {
            assert!(
                matches!(
                    LlmRequest::parse(body, None),
                    Err(GatewayError::BadRequest(_))
                ),
                "{body:?}"
            );
        }
        let long = format!(r#"{{"model":"gpt-{}"}}"#, "x".repeat(MAX_MODEL_LEN));
        assert!(LlmRequest::parse(long.as_bytes(), None).is_err());
        let deep = "[".repeat(100_000);
        assert!(LlmRequest::parse(deep.as_bytes(), None).is_err());
    }

    #[test]
    fn model_from_deployment() {
        let mut r = LlmRequest::parse(br#"{"messages":[]}"#, Some("gpt-4o")).unwrap();
        assert_eq!(r.model, "gpt-4o");
        assert!(!r.model_in_body);
        let out = r.rewritten_for("gpt-4o").unwrap();
        assert!(String::from_utf8_lossy(&out).contains("\"model\":\"gpt-4o\""));
        let r = LlmRequest::parse(br#"{"model":"other","messages":[]}"#, Some("gpt-4o")).unwrap();
        assert_eq!(r.model, "other");
    }

    #[test]
    fn rewrites_only_when_needed() {
        let mut r = LlmRequest::parse(br#"{"model":"fast","messages":[]}"#, None).unwrap();
        assert_eq!(r.rewritten_for("fast"), None);
        let out = r.rewritten_for("gpt-4o-mini").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["messages"], serde_json::json!([]));
    }

    #[test]
    fn params_read_each_api_maximum() {
        let parse = |b: &[u8]| LlmRequest::parse(b, None).unwrap();
        let chat =
            parse(br#"{"model":"m","max_completion_tokens":9,"temperature":0.5,"stream":true}"#);
        let p = chat.params(Api::ChatCompletions);
        assert_eq!(
            (p.max_tokens, p.temperature, p.stream),
            (Some(9), Some(0.5), true)
        );
        let r = parse(br#"{"model":"m","max_output_tokens":7}"#);
        assert_eq!(r.params(Api::Responses).max_tokens, Some(7));
        assert_eq!(r.params(Api::Messages).max_tokens, None);
    }
}
