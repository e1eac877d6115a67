//! Values assigned to a name that may hold a secret (`token`, `secret_key`,
//! `credentials`, `auth`, ...): names too common to take any value, so only
//! generated-looking ones of 16 or more characters.

use super::super::anchors::Named;
use super::assignment::{assignment_at, generated_value};
use super::{anywhere, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "secrets",
    name: "secret_assignment",
    matcher: Matcher::Assignment(secret_at),
    validate: generated_value,
    context: anywhere,
    #[cfg(test)]
    pattern: r#"(?i)\b[a-z0-9_]*(?:token|secrets|secret_?key|access_?key|private_?key|credentials?|auth)["']?\s*[:=]\s*["']?[^\s"',;]{16,}"#,
};

fn secret_at(b: &[u8], c: usize, at: usize) -> Option<(usize, usize)> {
    assignment_at(b, c, at, Named::Secret, 16)
}
