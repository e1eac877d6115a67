//! Which client API a request speaks, from its method and path.

/// The LLM APIs the gateway accepts from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
    /// Anthropic Messages, `POST /v1/messages`.
    Messages,
    /// Model listing, `GET /v1/models`, answered by the gateway itself.
    Models,
}

/// The error and listing format a client understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    OpenAi,
    Anthropic,
}

impl Api {
    /// Detects the API; `None` for paths the gateway does not serve. Azure
    /// OpenAI style paths (`/openai/deployments/{d}/chat/completions`,
    /// `/openai/v1/...`) count as the OpenAI API they carry.
    pub fn detect(method: &str, path: &str) -> Option<Api> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.strip_suffix('/').unwrap_or(path);
        if let Some(rest) = path.strip_prefix("/openai/deployments/") {
            let (_, tail) = rest.split_once('/')?;
            return match (method, tail) {
                ("POST", "chat/completions") => Some(Api::ChatCompletions),
                _ => None,
            };
        }
        let path = match path.strip_prefix("/openai") {
            Some(rest) if rest.starts_with("/v1/") => rest,
            _ => path,
        };
        match (method, path) {
            ("POST", "/v1/chat/completions") => Some(Api::ChatCompletions),
            ("POST", "/v1/responses") => Some(Api::Responses),
            ("POST", "/v1/messages") => Some(Api::Messages),
            ("GET", "/v1/models") => Some(Api::Models),
            _ => None,
        }
    }

    /// The client-facing name used in logs and (later) stats.
    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Responses => "responses",
            Api::Messages => "messages",
            Api::Models => "models",
        }
    }
}

/// The deployment named by an Azure-style path: the client's model name
/// when the body has none.
pub fn azure_deployment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let (deployment, _) = rest.split_once('/')?;
    (!deployment.is_empty()).then_some(deployment)
}

/// The format to answer in. Anthropic clients are recognised by the Messages
/// path or, for shared paths like `/v1/models`, by the `anthropic-version`
/// header their SDK always sends.
pub fn client_format(api: Option<Api>, has_anthropic_version: bool) -> ClientFormat {
    match api {
        Some(Api::Messages) => ClientFormat::Anthropic,
        Some(Api::ChatCompletions | Api::Responses) => ClientFormat::OpenAi,
        Some(Api::Models) | None if has_anthropic_version => ClientFormat::Anthropic,
        _ => ClientFormat::OpenAi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_paths() {
        assert_eq!(
            Api::detect("POST", "/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(
            Api::detect("POST", "/v1/messages?beta=true"),
            Some(Api::Messages)
        );
        assert_eq!(Api::detect("POST", "/v1/responses/"), Some(Api::Responses));
        assert_eq!(Api::detect("GET", "/v1/models"), Some(Api::Models));
        assert_eq!(Api::detect("GET", "/v1/chat/completions"), None);
        assert_eq!(Api::detect("POST", "/v2/other"), None);
        let azure = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
        assert_eq!(Api::detect("POST", azure), Some(Api::ChatCompletions));
        assert_eq!(azure_deployment(azure), Some("gpt-4o"));
        assert_eq!(
            Api::detect("POST", "/openai/v1/responses"),
            Some(Api::Responses)
        );
        assert_eq!(
            Api::detect("POST", "/openai/deployments/x/embeddings"),
            None
        );
        assert_eq!(azure_deployment("/v1/chat/completions"), None);
    }

    #[test]
    fn picks_client_format() {
        assert_eq!(
            client_format(Some(Api::Messages), false),
            ClientFormat::Anthropic
        );
        assert_eq!(
            client_format(Some(Api::Models), true),
            ClientFormat::Anthropic
        );
        assert_eq!(
            client_format(Some(Api::Models), false),
            ClientFormat::OpenAi
        );
        assert_eq!(
            client_format(Some(Api::ChatCompletions), true),
            ClientFormat::OpenAi
        );
        assert_eq!(client_format(None, true), ClientFormat::Anthropic);
    }
}
