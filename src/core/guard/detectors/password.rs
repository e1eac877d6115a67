//! Passwords and API keys assigned to a name that says so (`password`,
//! `pwd`, `secret`, `api_key`, `access_token`, ...): any value of six or
//! more characters but a placeholder.

use super::super::anchors::Named;
use super::assignment::{assigned, assignment_at, placeholder};
use super::{anywhere, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "secrets",
    name: "password",
    matcher: Matcher::Assignment(password_at),
    validate: password,
    context: anywhere,
    #[cfg(test)]
    pattern: r#"(?i)\b[a-z0-9_]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)["']?\s*[:=]\s*["']?[^\s"',;]{6,}"#,
};

fn password_at(b: &[u8], c: usize, at: usize) -> Option<(usize, usize)> {
    assignment_at(b, c, at, Named::Password, 6)
}

fn password(s: &str) -> bool {
    let value = assigned(s);
    value.len() >= 6 && !placeholder(value)
}
