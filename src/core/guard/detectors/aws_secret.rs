//! AWS secret access keys: 40 characters assigned to a name that says so
//! (`aws_secret_access_key`, `SecretAccessKey`), generated-looking.

use super::super::anchors::{alnum, Named};
use super::assignment::{assignment, generated_value};
use super::{anywhere, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "secrets",
    name: "aws_secret_key",
    matcher: Matcher::Assignment(aws_secret_at),
    validate: generated_value,
    context: anywhere,
    #[cfg(test)]
    pattern: r#"(?i)\b[a-z0-9_]*(?:secret_?access_?key|aws_?secret_?key)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}"#,
};

/// An AWS secret access key assignment: a value of exactly 40
/// `[A-Za-z0-9/+]` (the first 40 if longer).
fn aws_secret_at(b: &[u8], c: usize, at: usize) -> Option<(usize, usize)> {
    let (start, v) = assignment(b, c, at, Named::AwsSecret)?;
    let key = |x: u8| alnum(x) || matches!(x, b'/' | b'+');
    b.get(v..v + 40)
        .is_some_and(|w| w.iter().all(|x| key(*x)))
        .then_some((start, v + 40))
}
