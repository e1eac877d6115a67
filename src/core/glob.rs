//! Model-name patterns: `*` matches any run of characters, everything else is literal.

/// True when `name` matches `pattern` (`claude-*`, `*-mini`, `gpt-4o*`, exact names).
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        // No `*` at all: the whole name had to equal the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// True when the name matches any pattern; an empty list allows everything.
pub fn allowed_by(patterns: &[String], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| matches(p, name))
}

pub fn is_pattern(name: &str) -> bool {
    name.contains('*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_wildcards() {
        assert!(matches("gpt-4o", "gpt-4o"));
        assert!(!matches("gpt-4o", "gpt-4o-mini"));
        assert!(matches("gpt-4o*", "gpt-4o-mini"));
        assert!(matches("claude-*", "claude-sonnet-4-5"));
        assert!(!matches("claude-*", "gpt-4o"));
        assert!(matches("*-mini", "gpt-4o-mini"));
        assert!(!matches("*-mini", "gpt-4o"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxcyyb"));
        assert!(!matches("ab*ba", "aba"));
    }

    #[test]
    fn empty_list_allows_all() {
        assert!(allowed_by(&[], "x"));
        assert!(!allowed_by(&["gpt-*".to_string()], "claude-3"));
    }
}
