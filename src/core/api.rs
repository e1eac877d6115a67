//! Which endpoint a request calls, from its method and path.

/// The LLM APIs clients call the gateway with. Each is also a wire format
/// (`Api::wire`); its reading and writing live in `core::wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
    /// Anthropic Messages, `POST /v1/messages`.
    Messages,
}

/// What a client request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A model call in one of the client APIs.
    Llm(Api),
    /// Model listing, `GET /v1/models`, answered by the gateway itself.
    Models,
}

/// The error and listing format a client understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    OpenAi,
    Anthropic,
}

/// Every client API, in the order their paths are tried.
pub const APIS: [Api; 3] = [Api::ChatCompletions, Api::Responses, Api::Messages];

impl Endpoint {
    /// Detects the endpoint; `None` for paths the gateway does not serve.
    /// Azure OpenAI style paths (`/openai/deployments/{d}/chat/completions`,
    /// `/openai/responses`, `/openai/v1/...`) count as the OpenAI API they carry.
    pub fn detect(method: &str, path: &str) -> Option<Endpoint> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.strip_suffix('/').unwrap_or(path);
        if let Some(rest) = path.strip_prefix("/openai/deployments/") {
            let (_, tail) = rest.split_once('/')?;
            return match (method, tail) {
                ("POST", "chat/completions") => Some(Endpoint::Llm(Api::ChatCompletions)),
                _ => None,
            };
        }
        // The AzureOpenAI SDK sends Responses calls outside the deployment
        // paths and without `/v1` (the model is the body's).
        if (method, path) == ("POST", "/openai/responses") {
            return Some(Endpoint::Llm(Api::Responses));
        }
        let path = match path.strip_prefix("/openai") {
            Some(rest) if rest.starts_with("/v1/") => rest,
            _ => path,
        };
        match (method, path) {
            ("GET", "/v1/models") => Some(Endpoint::Models),
            ("POST", path) => APIS
                .into_iter()
                .find(|api| api.inbound().path() == path)
                .map(Endpoint::Llm),
            _ => None,
        }
    }

    /// The client-facing name used in logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Llm(api) => api.name(),
            Endpoint::Models => "models",
        }
    }
}

impl Api {
    /// The client-facing name used in logs, stats and traces.
    pub fn name(self) -> &'static str {
        self.wire().name()
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
pub fn client_format(endpoint: Option<Endpoint>, has_anthropic_version: bool) -> ClientFormat {
    match endpoint {
        Some(Endpoint::Llm(api)) => api.inbound().format(),
        Some(Endpoint::Models) | None if has_anthropic_version => ClientFormat::Anthropic,
        Some(Endpoint::Models) | None => ClientFormat::OpenAi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_paths() {
        assert_eq!(
            Endpoint::detect("POST", "/v1/chat/completions"),
            Some(Endpoint::Llm(Api::ChatCompletions))
        );
        assert_eq!(
            Endpoint::detect("POST", "/v1/messages?beta=true"),
            Some(Endpoint::Llm(Api::Messages))
        );
        assert_eq!(
            Endpoint::detect("POST", "/v1/responses/"),
            Some(Endpoint::Llm(Api::Responses))
        );
        assert_eq!(
            Endpoint::detect("GET", "/v1/models"),
            Some(Endpoint::Models)
        );
        assert_eq!(Endpoint::detect("GET", "/v1/chat/completions"), None);
        assert_eq!(Endpoint::detect("POST", "/v2/other"), None);
        let azure = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
        assert_eq!(
            Endpoint::detect("POST", azure),
            Some(Endpoint::Llm(Api::ChatCompletions))
        );
        assert_eq!(azure_deployment(azure), Some("gpt-4o"));
        assert_eq!(
            Endpoint::detect("POST", "/openai/v1/responses"),
            Some(Endpoint::Llm(Api::Responses))
        );
        let azure = "/openai/responses?api-version=2025-04-01-preview";
        assert_eq!(
            Endpoint::detect("POST", azure),
            Some(Endpoint::Llm(Api::Responses))
        );
        assert_eq!(azure_deployment(azure), None, "the model is the body's");
        assert_eq!(Endpoint::detect("GET", "/openai/responses"), None);
        assert_eq!(Endpoint::detect("POST", "/openai/messages"), None);
        assert_eq!(
            Endpoint::detect("POST", "/openai/deployments/x/embeddings"),
            None
        );
        assert_eq!(azure_deployment("/v1/chat/completions"), None);
    }

    #[test]
    fn picks_client_format() {
        assert_eq!(
            client_format(Some(Endpoint::Llm(Api::Messages)), false),
            ClientFormat::Anthropic
        );
        assert_eq!(
            client_format(Some(Endpoint::Models), true),
            ClientFormat::Anthropic
        );
        assert_eq!(
            client_format(Some(Endpoint::Models), false),
            ClientFormat::OpenAi
        );
        assert_eq!(
            client_format(Some(Endpoint::Llm(Api::ChatCompletions)), true),
            ClientFormat::OpenAi
        );
        assert_eq!(client_format(None, true), ClientFormat::Anthropic);
    }
}
