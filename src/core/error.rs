//! Gateway errors, rendered in the client's own API error format.

use super::api::ClientFormat;
use serde_json::json;

/// What went wrong, with the message the client will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    MissingKey,
    InvalidKey(&'static str),
    ModelNotAllowed(String),
    /// The request's target is outside the regions its key or team is pinned to.
    RegionNotAllowed(String),
    UnknownModel(String),
    BadRequest(String),
    TooLarge(usize),
    NotFound(String),
    SidecarUnavailable,
    /// A hard budget is used up; the message names the limit and the reset.
    BudgetExceeded {
        message: String,
        retry_after_s: u64,
    },
    /// A guardrail refused the request (never names the matched text).
    GuardrailBlocked {
        guardrail: &'static str,
        kind: String,
    },
    /// The provider answered something that cannot be read or translated.
    UpstreamInvalid(&'static str),
    /// A per-minute rate limit.
    RateLimited {
        message: String,
        retry_after_s: u64,
    },
    Internal(&'static str),
}

impl GatewayError {
    pub fn status(&self) -> u32 {
        match self {
            GatewayError::MissingKey | GatewayError::InvalidKey(_) => 401,
            GatewayError::ModelNotAllowed(_) | GatewayError::RegionNotAllowed(_) => 403,
            GatewayError::UnknownModel(_) | GatewayError::NotFound(_) => 404,
            GatewayError::BadRequest(_) => 400,
            GatewayError::TooLarge(_) => 413,
            GatewayError::SidecarUnavailable => 503,
            GatewayError::BudgetExceeded { .. } | GatewayError::RateLimited { .. } => 429,
            GatewayError::UpstreamInvalid(_) => 502,
            GatewayError::GuardrailBlocked { .. } => 400,
            GatewayError::Internal(_) => 500,
        }
    }

    /// Seconds the client should wait, for a `retry-after` header.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            GatewayError::BudgetExceeded { retry_after_s, .. }
            | GatewayError::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        }
    }

    /// The human-readable message; never contains prompt text or key material.
    pub fn message(&self) -> String {
        match self {
            GatewayError::MissingKey => "Missing API key: send your Tollgate key as `Authorization: Bearer <key>` or `x-api-key: <key>`.".into(),
            GatewayError::InvalidKey(reason) => format!("Invalid API key: the key is {reason}."),
            GatewayError::ModelNotAllowed(m) => format!("This key is not allowed to use model `{m}`."),
            GatewayError::RegionNotAllowed(m) => format!("Model `{m}` is served outside the regions this key or team is pinned to; nothing was sent."),
            GatewayError::UnknownModel(m) => format!("The model `{m}` does not exist or is not served by this gateway."),
            GatewayError::BadRequest(m) => m.clone(),
            GatewayError::TooLarge(limit) => format!("Request body is larger than the gateway limit of {limit} bytes."),
            GatewayError::NotFound(path) => format!("Unknown endpoint `{path}`: the gateway serves /v1/chat/completions, /v1/responses, /v1/messages and /v1/models."),
            GatewayError::SidecarUnavailable => "The gateway's key and budget service is unavailable; try again shortly.".into(),
            GatewayError::BudgetExceeded { message, .. } | GatewayError::RateLimited { message, .. } => message.clone(),
            GatewayError::UpstreamInvalid(what) => format!("Bad answer from the provider: {what}."),
            GatewayError::GuardrailBlocked { guardrail, kind } => {
                format!("The request was blocked by the {guardrail} guardrail ({kind}).")
            }
            GatewayError::Internal(what) => format!("Internal gateway error: {what}."),
        }
    }

    /// A stable machine-readable name, also used as a stats tag.
    pub fn code(&self) -> &'static str {
        self.openai_type_and_code().1
    }

    /// OpenAI `error.type` / `error.code` values, matching what the SDKs expect.
    fn openai_type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::MissingKey | GatewayError::InvalidKey(_) => {
                ("invalid_request_error", "invalid_api_key")
            }
            GatewayError::ModelNotAllowed(_) => ("permission_error", "model_not_allowed"),
            GatewayError::RegionNotAllowed(_) => ("permission_error", "region_not_allowed"),
            GatewayError::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            GatewayError::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            GatewayError::TooLarge(_) => ("invalid_request_error", "request_too_large"),
            GatewayError::NotFound(_) => ("invalid_request_error", "unknown_url"),
            GatewayError::SidecarUnavailable => ("service_unavailable", "key_service_unavailable"),
            GatewayError::BudgetExceeded { .. } => ("insufficient_quota", "budget_exceeded"),
            GatewayError::RateLimited { .. } => ("requests", "rate_limit_exceeded"),
            GatewayError::UpstreamInvalid(_) => ("server_error", "bad_upstream_response"),
            GatewayError::GuardrailBlocked { .. } => ("invalid_request_error", "guardrail_blocked"),
            GatewayError::Internal(_) => ("server_error", "internal_error"),
        }
    }

    /// Anthropic `error.type` values (see their errors documentation).
    fn anthropic_type(&self) -> &'static str {
        match self {
            GatewayError::MissingKey | GatewayError::InvalidKey(_) => "authentication_error",
            GatewayError::ModelNotAllowed(_) | GatewayError::RegionNotAllowed(_) => {
                "permission_error"
            }
            GatewayError::UnknownModel(_) | GatewayError::NotFound(_) => "not_found_error",
            GatewayError::BadRequest(_) | GatewayError::GuardrailBlocked { .. } => {
                "invalid_request_error"
            }
            GatewayError::TooLarge(_) => "request_too_large",
            GatewayError::SidecarUnavailable => "overloaded_error",
            GatewayError::BudgetExceeded { .. } | GatewayError::RateLimited { .. } => {
                "rate_limit_error"
            }
            GatewayError::Internal(_) | GatewayError::UpstreamInvalid(_) => "api_error",
        }
    }

    /// The JSON body for the client's format.
    pub fn body(&self, format: ClientFormat) -> Vec<u8> {
        let message = self.message();
        let value = match format {
            ClientFormat::OpenAi => {
                let (kind, code) = self.openai_type_and_code();
                let param = match self {
                    GatewayError::UnknownModel(_) | GatewayError::ModelNotAllowed(_) => {
                        Some("model")
                    }
                    _ => None,
                };
                json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
            }
            ClientFormat::Anthropic => {
                json!({"type": "error", "error": {"type": self.anthropic_type(), "message": message}})
            }
        };
        value.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }

    #[test]
    fn openai_shape() {
        let e = GatewayError::ModelNotAllowed("gpt-4o".into());
        assert_eq!(e.status(), 403);
        let v = parse(&e.body(ClientFormat::OpenAi));
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("gpt-4o"));
    }

    #[test]
    fn anthropic_shape() {
        let v = parse(&GatewayError::MissingKey.body(ClientFormat::Anthropic));
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(GatewayError::TooLarge(10).status(), 413);
        assert_eq!(GatewayError::SidecarUnavailable.status(), 503);
    }
}
