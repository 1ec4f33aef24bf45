//! Problems found in a query: the lenient parser's [`Diagnostic`]s and the strict parser's
//! [`QueryError`]. Both carry a byte [`Span`], a stable `code` (for the UI and API clients) and a
//! lowercase human message; [`ErrorKind`] is the catalogue of codes.

use crate::ast::Span;
use serde::Serialize;

/// Every problem the parser reports. `code()` is stable; the Display text is the human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("query is {len} bytes, more than the limit of {limit}")]
    QueryTooLong { len: usize, limit: usize },
    #[error("more than {limit} terms")]
    TooManyTerms { limit: usize },
    #[error("parentheses nested deeper than {limit}")]
    TooDeep { limit: usize },
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("unterminated regex: a value after `{qualifier}:` that starts with `/` is a regex")]
    UnterminatedRegex { qualifier: String },
    #[error("invalid regex: {reason}")]
    BadRegex { reason: String },
    #[error("unsupported in a regex: {construct}")]
    UnsupportedRegex { construct: String },
    #[error("regex is {len} bytes, more than the limit of {limit}")]
    RegexTooLong { len: usize, limit: usize },
    #[error("regex nested deeper than {limit}")]
    RegexTooDeep { limit: usize },
    #[error("regex repetition count {count} is more than the limit of {limit}")]
    RegexRepeatTooLarge { count: u32, limit: u32 },
    #[error("unknown level `{value}` (levels: trace, debug, info, warn, error, fatal)")]
    UnknownLevel { value: String },
    #[error("bad time `{value}`: {reason}")]
    BadTime { value: String, reason: &'static str },
    #[error(
        "time: takes a comparison or a range of RFC 3339 timestamps or dates, like \
         time:>=2026-11-26 or time:2026-11-26..2026-11-27"
    )]
    TimeNeedsComparison,
    #[error("comparisons and ranges do not apply to the message")]
    ComparisonOnMessage,
    #[error("empty value after `{qualifier}:`")]
    EmptyValue { qualifier: String },
    #[error("`{text}` has no letters or digits to search for")]
    NoSearchableText { text: String },
    #[error("range `{range}` matches nothing")]
    EmptyRange { range: String },
    #[error("bad range `{range}`: {reason}")]
    BadRange { range: String, reason: &'static str },
    #[error("empty parentheses")]
    EmptyGroup,
    #[error("unknown field `{name}` after `{qualifier}:`")]
    UnknownField {
        qualifier: &'static str,
        name: String,
    },
    #[error("unmatched `)`")]
    UnmatchedParen,
    #[error("unclosed `(`")]
    UnclosedParen,
    #[error("`{op}` needs a query on both sides")]
    DanglingOperator { op: &'static str },
    #[error("`{op}` needs a query right after it")]
    DanglingNegation { op: &'static str },
}

impl ErrorKind {
    /// The stable identifier of the problem (`unterminated_quote`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::QueryTooLong { .. } => "query_too_long",
            ErrorKind::TooManyTerms { .. } => "too_many_terms",
            ErrorKind::TooDeep { .. } => "too_deep",
            ErrorKind::UnterminatedQuote => "unterminated_quote",
            ErrorKind::UnterminatedRegex { .. } => "unterminated_regex",
            ErrorKind::BadRegex { .. } => "bad_regex",
            ErrorKind::UnsupportedRegex { .. } => "unsupported_regex",
            ErrorKind::RegexTooLong { .. } => "regex_too_long",
            ErrorKind::RegexTooDeep { .. } => "regex_too_deep",
            ErrorKind::RegexRepeatTooLarge { .. } => "regex_repeat_too_large",
            ErrorKind::UnknownLevel { .. } => "unknown_level",
            ErrorKind::BadTime { .. } => "bad_time",
            ErrorKind::TimeNeedsComparison => "time_needs_comparison",
            ErrorKind::ComparisonOnMessage => "comparison_on_message",
            ErrorKind::EmptyValue { .. } => "empty_value",
            ErrorKind::NoSearchableText { .. } => "no_searchable_text",
            ErrorKind::EmptyRange { .. } => "empty_range",
            ErrorKind::BadRange { .. } => "bad_range",
            ErrorKind::EmptyGroup => "empty_group",
            ErrorKind::UnknownField { .. } => "unknown_field",
            ErrorKind::UnmatchedParen => "unmatched_paren",
            ErrorKind::UnclosedParen => "unclosed_paren",
            ErrorKind::DanglingOperator { .. } => "dangling_operator",
            ErrorKind::DanglingNegation { .. } => "dangling_negation",
        }
    }
}

/// One problem found by [`crate::parse_lenient`]; the parser skipped or repaired the text at
/// `span` and went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub span: Span,
    pub code: &'static str,
    pub message: String,
}

impl Diagnostic {
    pub fn new(span: Span, kind: &ErrorKind) -> Self {
        Diagnostic {
            span,
            code: kind.code(),
            message: kind.to_string(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..{} {}: {}",
            self.span.start, self.span.end, self.code, self.message
        )
    }
}

/// The first problem of a query, from [`crate::parse_strict`]. Displays as
/// `<start>..<end>: <message>` with byte offsets into the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}..{}: {message}", span.start, span.end)]
pub struct QueryError {
    pub span: Span,
    pub code: &'static str,
    pub message: String,
}

impl From<Diagnostic> for QueryError {
    fn from(d: Diagnostic) -> Self {
        QueryError {
            span: d.span,
            code: d.code,
            message: d.message,
        }
    }
}
