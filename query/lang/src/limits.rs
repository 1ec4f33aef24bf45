//! Bounds on what one query may ask, so a hostile or accidental query cannot make the parser, the
//! regex engines or the backends do unbounded work.

/// Limits passed by the caller to [`crate::parse_lenient`] / [`crate::parse_strict`].
/// Exceeding one is a diagnostic (lenient: the excess is dropped) or an error (strict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of query text (lenient: only this prefix is parsed).
    pub max_query_bytes: usize,
    /// Terms in the query; each value of a comma list and each `has:`/`no:` counts.
    pub max_terms: usize,
    /// Nesting of parentheses.
    pub max_depth: usize,
    /// Bytes of one regex, between the slashes.
    pub max_regex_bytes: usize,
    /// Largest count in `{n}`, `{n,}`, `{n,m}`.
    pub max_regex_repeat: u32,
    /// Nesting of groups, classes and repetitions inside one regex.
    pub max_regex_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_query_bytes: 4096,
            max_terms: 64,
            max_depth: 16,
            max_regex_bytes: 256,
            max_regex_repeat: 100,
            max_regex_depth: 8,
        }
    }
}
