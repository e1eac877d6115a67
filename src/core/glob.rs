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

/// True when some name matches both patterns (`gpt-*` and `*-mini` do;
/// `gpt-*` and `claude-*` do not). Dynamic programming over the two
/// patterns' positions: O(len(a) * len(b)) time, two rows of memory.
pub fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // next[j] / row[j]: the rests a[i + 1..] / a[i..] and b[j..] share a name.
    let mut next = vec![false; b.len() + 1];
    let mut row = vec![false; b.len() + 1];
    for i in (0..=a.len()).rev() {
        for j in (0..=b.len()).rev() {
            let at = |r: &[bool], j: usize| r.get(j).copied() == Some(true);
            let value = match (a.get(i), b.get(j)) {
                (None, None) => true,
                // A `*` matches nothing more, or also what the other side
                // has next (one literal, or all the other's `*` makes).
                (Some(b'*'), other) => at(&next, j) || (other.is_some() && at(&row, j + 1)),
                (other, Some(b'*')) => at(&row, j + 1) || (other.is_some() && at(&next, j)),
                (Some(x), Some(y)) => x == y && at(&next, j + 1),
                _ => false,
            };
            if let Some(cell) = row.get_mut(j) {
                *cell = value;
            }
        }
        std::mem::swap(&mut next, &mut row);
    }
    next.first().copied() == Some(true)
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
    fn patterns_overlap_when_a_name_matches_both() {
        for (a, b) in [
            ("gpt-4o", "gpt-4o"),
            ("gpt-*", "gpt-4o"),
            ("gpt-*", "*-mini"),
            ("*", "claude-x"),
            ("a*c", "ab*"),
            ("*x*", "*y*"),
            ("gpt-4o*", "gpt-*"),
        ] {
            assert!(overlap(a, b), "{a} {b}");
            assert!(overlap(b, a), "{b} {a}");
        }
        for (a, b) in [
            ("gpt-*", "claude-*"),
            ("gpt-4o", "gpt-4o-mini"),
            ("*-mini", "*-nano"),
            ("a*b", "*c"),
            ("ab", "a"),
        ] {
            assert!(!overlap(a, b), "{a} {b}");
            assert!(!overlap(b, a), "{b} {a}");
        }
    }

    #[test]
    fn empty_list_allows_all() {
        assert!(allowed_by(&[], "x"));
        assert!(!allowed_by(&["gpt-*".to_string()], "claude-3"));
    }
}
