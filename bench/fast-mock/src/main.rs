//! A fast canned LLM provider for `make bench`: fixed OpenAI chat and
//! Anthropic messages answers (JSON or SSE) with realistic usage blocks, on
//! one thread so it leaves the other core to Envoy and the load generator.
//! Unlike wasm-tests/mock_provider.py it checks nothing and records nothing.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use std::time::Duration;

const CHAT: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is the benchmark reply."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

const MESSAGE: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"Hello! This is the benchmark reply."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}}"#;

/// Chunks of a streamed chat answer: role, `n` text deltas, finish, usage, [DONE].
fn chat_stream(n: usize) -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut out = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..n {
        out.push(chunk(&format!("{{\"content\":\"word{i} \"}}"), "null"));
    }
    out.push(chunk("{}", "\"stop\""));
    out.push("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":40,\"total_tokens\":52}}\n\n".into());
    out.push("data: [DONE]\n\n".into());
    out
}

fn messages_stream(n: usize) -> Vec<String> {
    let event = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![
        event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
        ),
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
    ];
    for i in 0..n {
        out.push(event(
            "content_block_delta",
            &format!("{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}"),
        ));
    }
    out.push(event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    out.push(event("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":40}}"#));
    out.push(event("message_stop", r#"{"type":"message_stop"}"#));
    out
}

fn json(body: &'static str) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// Streams the events one by one, `gap` apart, like a model generating.
fn sse(events: Vec<String>, gap: Duration) -> Response {
    let stream = futures_util::stream::unfold(events.into_iter(), move |mut it| async move {
        let next = it.next()?;
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        Some((Ok::<_, std::convert::Infallible>(next), it))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn wants_stream(body: &str) -> bool {
    body.contains("\"stream\":true") || body.contains("\"stream\": true")
}

/// Text deltas per streamed answer: `x-mock-chunks`, default 20.
fn chunks(headers: &HeaderMap) -> usize {
    headers
        .get("x-mock-chunks")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .min(10_000)
}

fn gap(headers: &HeaderMap) -> Duration {
    let ms = headers
        .get("x-mock-chunk-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(ms)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18100);
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|headers: HeaderMap, body: String| async move {
                if wants_stream(&body) {
                    sse(chat_stream(chunks(&headers)), gap(&headers))
                } else {
                    json(CHAT)
                }
            }),
        )
        .route(
            "/v1/messages",
            post(|headers: HeaderMap, body: String| async move {
                if wants_stream(&body) {
                    sse(messages_stream(chunks(&headers)), gap(&headers))
                } else {
                    json(MESSAGE)
                }
            }),
        )
        // The OTLP/HTTP collector for the bench: accepts and drops spans, so
        // a Python receiver does not take the CPU the measured Envoy needs.
        .route("/v1/traces", post(|| async { StatusCode::OK }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") });
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fast mock: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("fast mock listening on 127.0.0.1:{port}");
    // Without TCP_NODELAY each SSE chunk after the first waits for the
    // client's delayed ACK (~40 ms): that would measure the kernel, not us.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("fast mock: {e}");
    }
}
