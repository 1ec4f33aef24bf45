//! The Git-like log search language: `namespace:shop -pod:canary-* level:>=warn "connection refused"`.
//!
//! Pure: no IO, no tokio, no clock. Never panics on any input string (property tests).
//!
//! - [`parse_lenient`] (the UI) returns the query it understood plus diagnostics with byte spans;
//!   [`parse_strict`] (the API) returns the first problem as a [`QueryError`].
//! - [`print()`] renders an [`Expr`] back to canonical query text; `parse(print(e)) == e` up to spans.
//! - [`es::to_dsl`] lowers to Elasticsearch 8 query DSL (only the query types chosen here: no
//!   scripts, no `query_string`).
//! - [`eval::matches`] evaluates a query against one record in memory (live tail, post-filters,
//!   and the oracle of the backends' tests); [`eval::highlight`] finds the free-text matches in a
//!   message.
//! - [`message_tokens`] is the one tokenizer of the message field: the embedded index and the
//!   Elasticsearch index template split text the same way.
//!
//! Grammar (informal):
//! ```text
//! query   := or
//! or      := and ("OR" and)*
//! and     := unary+                      (implicit AND)  |  unary ("AND" unary)*
//! unary   := ("-" | "NOT") unary | "(" or ")" | term
//! term    := qualifier ":" values | "has:" field | "no:" field | value
//! values  := value ("," value)*          (a comma list is an OR)
//! value   := word | "quoted \" phrase" | /regex/ | /regex/i | glob | cmp word | word ".." word
//! ```
//!
//! Lexical rules (the details users meet):
//! - `AND`, `OR`, `NOT` are operators only in capitals; `OR` binds looser than `AND`. `-` negates
//!   only when written right before a term or `(` (`-pod:x`, `-(a b)`); `a-b` is a word.
//! - A bare word ends at whitespace, `(`, `)` or `"` (and `,` in qualifier values).
//! - `name:` is a qualifier only for the known names (ASCII case-insensitive), `label.<key>` with a
//!   key of `[A-Za-z0-9._/-]`, `has` and `no`; any other `word:...` is free text, so
//!   `http://svc:8080` needs no quoting.
//! - Quotes make everything literal (`"canary-*"`, `"-5"`, `"AND"`); `\"` and `\\` are the only
//!   escapes. A quoted value without whitespace is a `Word`, with whitespace a `Phrase`.
//! - After a qualifier, a value starting with `/` is a regex (`pod:/api-[0-9]+/`); in free text a
//!   token is a regex only when it closes (`/.../` or `/.../i` followed by whitespace, `)` or the
//!   end), so paths like `/api/v1` are words. A regex may contain spaces (`/a (b|c)/`) but not
//!   after an unescaped inner `/`; write `\/` for a slash. Regexes are normalised to the subset
//!   Rust `regex` and Lucene read alike (see the `parser::re` docs on what is translated or
//!   rejected).
//! - A bare value with `*` or `?` is a glob, except a free-text one that starts with `/` and could
//!   read as the start of a regex (`/health*` is the word `/health*`; `/api/*` is a glob).
//! - Only after a qualifier: comma lists (an `Or`), comparisons `> >= < <=` (value bare or quoted)
//!   and ranges `a..b` / `a..*` / `*..b` (split at the first `..`; quote a value containing `..`).
//!
//! Semantics: each free-text word, phrase, glob or regex is its own condition on the message (`foo
//! bar` needs both). A word is a token of [`message_terms`]; a bare word the tokenizer splits
//! (`/api/v1`, `a.b-c`) stays one `Word` in the AST and is lowered as a phrase of its tokens. The
//! reference semantics of every predicate are in [`eval`]; the normal form of the AST (flattened,
//! negations collapsed, levels and times normalised) is described in `parser`.
//!
//! Limits ([`Limits`]) bound the query length, terms, parenthesis depth and regexes; the parser
//! recurses once per parenthesis level, so keep `max_depth` small.

pub mod ast;
pub mod error;
pub mod es;
pub mod eval;
mod lexer;
pub mod limits;
mod parser;
mod print;

pub use ast::{CmpOp, Expr, Field, LEVELS, Pred, Span, Term};
pub use error::{Diagnostic, ErrorKind, QueryError};
pub use eval::{Doc, Matcher, glob_to_regex, level_set};
pub use limits::Limits;
pub use parser::time::{format_timestamp, parse_timestamp};
pub use parser::{Parsed, normalize_level, parse_lenient, parse_strict};
pub use print::print;

/// The message tokenizer: maximal runs of alphanumeric characters (`char::is_alphanumeric`),
/// lowercased. `GET /api/v1/users?id=7` → `get`, `api`, `v1`, `users`, `id`, `7`.
///
/// The embedded index registers exactly this tokenizer for `message`, and the Elasticsearch index
/// template defines the same split (a `pattern` tokenizer on `[^\p{L}\p{N}]+` plus `lowercase`), so
/// a word or phrase matches the same records in both.
pub fn message_tokens(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = chars.peek() {
            if c.is_alphanumeric() {
                break;
            }
            chars.next();
        }
        let (start, first) = chars.next()?;
        let mut end = start + first.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        Some((start, end))
    })
}

/// The lowercased tokens of `text`, as the index stores them. Lowercased char by char (no
/// final-sigma rule), as tantivy's and Lucene's lowercase filters do.
pub fn message_terms(text: &str) -> Vec<String> {
    message_tokens(text)
        .map(|(s, e)| text[s..e].chars().flat_map(char::to_lowercase).collect())
        .collect()
}
