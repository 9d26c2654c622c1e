//! Bounds on text that came from outside. Many accounts share one server, so
//! what a message quotes from its input is a short excerpt, never the input
//! itself: a 6 MB bucket field must not become a 6 MB failure reason, event
//! or log line.

/// Characters of untrusted input a message quotes.
pub const EXCERPT_CHARS: usize = 64;

/// The longest failure reason kept, in bytes.
pub const MAX_FAILURE_REASON: usize = 1024;

/// `text` quoted like `{:?}`, cut to [`EXCERPT_CHARS`] characters with an
/// ellipsis and the full length when longer: `"abc…" (6000000 bytes)`.
pub fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(EXCERPT_CHARS).collect();
    if cut.len() == text.len() {
        format!("{cut:?}")
    } else {
        format!("{:?} ({} bytes)", format!("{cut}…"), text.len())
    }
}

/// At most [`EXCERPT_CHARS`] characters of `text`, borrowed: for log fields
/// that carry request input (ids and accounts as the caller sent them).
pub fn clip(text: &str) -> &str {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `text` cut at a character boundary to at most `max` bytes, marked with
/// an ellipsis when cut.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole() {
        assert_eq!(quoted("data"), "\"data\"");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn long_text_is_cut_and_its_length_named() {
        let long = "x".repeat(6_000_000);
        let excerpt = quoted(&long);
        assert!(excerpt.len() < 100, "{excerpt}");
        assert!(excerpt.ends_with("(6000000 bytes)"), "{excerpt}");
        let wide = "é".repeat(100);
        assert!(quoted(&wide).contains('…'));
    }

    #[test]
    fn clipping_borrows_at_most_the_excerpt() {
        assert_eq!(clip("abc"), "abc");
        assert_eq!(clip(&"é".repeat(1000)).chars().count(), EXCERPT_CHARS);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncated("short", 10), "short");
        let cut = truncated(&"é".repeat(10), 7);
        assert!(cut.len() <= 7 && cut.ends_with('…'), "{cut}");
        assert_eq!(truncated(&"a".repeat(2000), 1024).len(), 1024);
    }
}
