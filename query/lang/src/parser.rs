//! Tokens → [`Expr`] in normal form: a hand-written recursive descent with error recovery, so the
//! lenient mode (the UI) and the strict mode (the API) share one code path: the strict mode is the
//! lenient parse that found no problem.
//!
//! Normal form of the result:
//! - `And`/`Or` are flattened, never empty, never with a single child; the empty query is `All`;
//! - negations collapse: `--x`, `NOT -x`, `-(-x)` are `x`; `no:f` and `-has:f` are `Not(Exists)`;
//! - a quoted value without whitespace is a `Word` (the quotes only make `*`, `-`, `:`... literal);
//!   a `Phrase` always contains whitespace. On every field a word and a one-word phrase match the
//!   same records, so this loses nothing and lets `print` quote any word that needs it;
//! - levels are one of [`LEVELS`] (aliases like `warning`, `err`, `crit` are resolved), `time:`
//!   values are RFC 3339 UTC with nanoseconds, regexes are in the subset described in `re`.

pub(crate) mod re;
pub(crate) mod time;

use crate::ast::{Expr, Field, LEVELS, Pred, Span, Term};
use crate::error::{Diagnostic, ErrorKind, QueryError};
use crate::lexer::{self, TokKind, Token, Value};
use crate::limits::Limits;
use crate::message_terms;
use serde::Serialize;

/// What [`parse_lenient`] understood, and what it had to skip or repair to get there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parsed {
    pub expr: Expr,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses for the UI: always returns a query, plus a diagnostic for each problem. An unterminated
/// quote is a phrase to the end, an unmatched `)` or a dangling `OR`, `AND`, `NOT` or `-` is
/// ignored, an invalid regex becomes free text, an invalid term (unknown level, bad time, ...) is
/// dropped, and past a limit the excess is dropped (the text past `max_query_bytes` is not read).
pub fn parse_lenient(text: &str, limits: &Limits) -> Parsed {
    let mut diagnostics = Vec::new();
    let mut text = text;
    if text.len() > limits.max_query_bytes {
        let mut cut = limits.max_query_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let kind = ErrorKind::QueryTooLong {
            len: text.len(),
            limit: limits.max_query_bytes,
        };
        let span = Span {
            start: cut,
            end: text.len(),
        };
        diagnostics.push(Diagnostic::new(span, &kind));
        text = &text[..cut];
    }
    let tokens = lexer::lex(text, &mut diagnostics);
    let mut p = Parser {
        tokens,
        pos: 0,
        diags: diagnostics,
        limits,
        terms: 0,
        too_many_reported: false,
    };
    let expr = p.parse_or(0).unwrap_or(Expr::All);
    let mut diagnostics = p.diags;
    // the lexer reports before the parser: present them in text order
    diagnostics.sort_by_key(|d| d.span.start);
    Parsed { expr, diagnostics }
}

/// Parses for the API: the query, or its first problem (the one that starts first).
pub fn parse_strict(text: &str, limits: &Limits) -> Result<Expr, QueryError> {
    let parsed = parse_lenient(text, limits);
    // the length check comes first whatever its position: nothing past the cut was read
    let first = parsed
        .diagnostics
        .iter()
        .find(|d| d.code == "query_too_long")
        .or(parsed.diagnostics.first());
    match first {
        Some(d) => Err(d.clone().into()),
        None => Ok(parsed.expr),
    }
}

/// The canonical level for a level name or a common alias (`warning`, `err`, `crit`, ...),
/// ASCII case-insensitive.
pub fn normalize_level(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    Some(match lower.as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "inf" | "information" | "notice" => "info",
        "warn" | "warning" | "wrn" => "warn",
        "error" | "err" => "error",
        "fatal" | "critical" | "crit" | "panic" | "emerg" | "emergency" | "alert" | "ftl" => {
            "fatal"
        }
        _ => return None,
    })
}

/// `And` of `items` in normal form (flattened; `None` when empty, the item itself when alone).
pub(crate) fn and_of(items: Vec<Expr>) -> Option<Expr> {
    combine(items, true)
}

/// `Or` of `items` in normal form.
pub(crate) fn or_of(items: Vec<Expr>) -> Option<Expr> {
    combine(items, false)
}

fn combine(items: Vec<Expr>, and: bool) -> Option<Expr> {
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::And { args: inner } if and => args.extend(inner),
            Expr::Or { args: inner } if !and => args.extend(inner),
            e => args.push(e),
        }
    }
    match args.len() {
        0 => None,
        1 => args.pop(),
        _ if and => Some(Expr::And { args }),
        _ => Some(Expr::Or { args }),
    }
}

/// `Not(e)` in normal form: a double negation is the expression itself.
pub(crate) fn not_of(e: Expr) -> Expr {
    match e {
        Expr::Not { arg } => *arg,
        e => Expr::Not { arg: Box::new(e) },
    }
}

struct Parser<'l> {
    tokens: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
    limits: &'l Limits,
    terms: usize,
    too_many_reported: bool,
}

fn is_end_of_operand(t: Option<&TokKind>) -> bool {
    matches!(t, None | Some(TokKind::Or | TokKind::And | TokKind::RParen))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&TokKind> {
        self.tokens.get(self.pos).map(|t| &t.kind)
    }

    fn span(&self) -> Span {
        self.tokens
            .get(self.pos)
            .map_or(Span { start: 0, end: 0 }, |t| t.span)
    }

    fn diag(&mut self, span: Span, kind: ErrorKind) {
        self.diags.push(Diagnostic::new(span, &kind));
    }

    fn parse_or(&mut self, depth: usize) -> Option<Expr> {
        let mut branches = Vec::new();
        let mut last = self.parse_and(depth);
        while self.peek() == Some(&TokKind::Or) {
            let or_span = self.span();
            self.pos += 1;
            let left_ok = last.is_some();
            branches.extend(last);
            last = self.parse_and(depth);
            if !left_ok || last.is_none() {
                self.diag(or_span, ErrorKind::DanglingOperator { op: "OR" });
            }
        }
        branches.extend(last);
        or_of(branches)
    }

    fn parse_and(&mut self, depth: usize) -> Option<Expr> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None | Some(TokKind::Or) => break,
                Some(TokKind::RParen) if depth > 0 => break,
                Some(TokKind::RParen) => {
                    let span = self.span();
                    self.diag(span, ErrorKind::UnmatchedParen);
                    self.pos += 1;
                }
                Some(TokKind::And) => {
                    let span = self.span();
                    self.pos += 1;
                    if items.is_empty() || is_end_of_operand(self.peek()) {
                        self.diag(span, ErrorKind::DanglingOperator { op: "AND" });
                    }
                }
                Some(_) => items.extend(self.parse_unary(depth)),
            }
        }
        and_of(items)
    }

    fn parse_unary(&mut self, depth: usize) -> Option<Expr> {
        let mut negations = 0usize;
        let mut last = None;
        while let Some(op @ (TokKind::Neg | TokKind::Not)) = self.peek() {
            last = Some((if *op == TokKind::Neg { "-" } else { "NOT" }, self.span()));
            negations += 1;
            self.pos += 1;
        }
        if let Some((op, span)) = last
            && is_end_of_operand(self.peek())
        {
            self.diag(span, ErrorKind::DanglingNegation { op });
            return None;
        }
        let e = self.parse_primary(depth)?;
        Some(if negations % 2 == 1 { not_of(e) } else { e })
    }

    fn parse_primary(&mut self, depth: usize) -> Option<Expr> {
        let token = self.tokens.get(self.pos)?.clone();
        self.pos += 1;
        match token.kind {
            TokKind::LParen => self.group(token.span, depth),
            TokKind::Text(value) => self.free_text(value, token.span),
            TokKind::Qualified {
                name,
                field,
                values,
            } => {
                let mut terms = Vec::new();
                for (i, (value, span)) in values.into_iter().enumerate() {
                    // the first value's term covers the qualifier too
                    let span = if i == 0 {
                        Span {
                            start: token.span.start,
                            end: span.end,
                        }
                    } else {
                        span
                    };
                    terms.extend(self.value_term(&field, &name, value, span));
                }
                or_of(terms)
            }
            TokKind::Presence {
                negated,
                name,
                name_span,
            } => {
                let qualifier = if negated { "no" } else { "has" };
                if name.is_empty() {
                    let qualifier = qualifier.to_owned();
                    self.diag(token.span, ErrorKind::EmptyValue { qualifier });
                    return None;
                }
                let Some(field) = lexer::resolve_field(&name) else {
                    self.diag(name_span, ErrorKind::UnknownField { qualifier, name });
                    return None;
                };
                let e = self.term(field, Pred::Exists, token.span)?;
                Some(if negated { not_of(e) } else { e })
            }
            // callers stop before these; consume and drop if reached anyway
            TokKind::RParen | TokKind::And | TokKind::Or | TokKind::Not | TokKind::Neg => None,
        }
    }

    fn group(&mut self, open: Span, depth: usize) -> Option<Expr> {
        if depth >= self.limits.max_depth {
            let limit = self.limits.max_depth;
            self.diag(open, ErrorKind::TooDeep { limit });
            // drop the whole group, nested groups included
            let mut level = 1usize;
            while let Some(t) = self.peek() {
                match t {
                    TokKind::LParen => level += 1,
                    TokKind::RParen => level -= 1,
                    _ => {}
                }
                self.pos += 1;
                if level == 0 {
                    break;
                }
            }
            return None;
        }
        if self.peek() == Some(&TokKind::RParen) {
            let close = self.span();
            self.pos += 1;
            let span = Span {
                start: open.start,
                end: close.end,
            };
            self.diag(span, ErrorKind::EmptyGroup);
            return None;
        }
        let inner = self.parse_or(depth + 1);
        if self.peek() == Some(&TokKind::RParen) {
            self.pos += 1;
        } else {
            self.diag(open, ErrorKind::UnclosedParen);
        }
        inner
    }

    /// Counts a term against the limit; `None` (and one diagnostic) past it.
    fn term(&mut self, field: Field, pred: Pred, span: Span) -> Option<Expr> {
        if self.terms >= self.limits.max_terms {
            if !self.too_many_reported {
                self.too_many_reported = true;
                let limit = self.limits.max_terms;
                self.diag(span, ErrorKind::TooManyTerms { limit });
            }
            return None;
        }
        self.terms += 1;
        Some(Expr::Term(Term { field, pred, span }))
    }

    /// A literal on the message; needs at least one token to search for.
    fn message_literal(&mut self, text: String, span: Span, report: bool) -> Option<Expr> {
        if message_terms(&text).is_empty() {
            if report {
                self.diag(span, ErrorKind::NoSearchableText { text });
            }
            return None;
        }
        let pred = literal(text);
        self.term(Field::Message, pred, span)
    }

    fn free_text(&mut self, value: Value, span: Span) -> Option<Expr> {
        match value {
            // `/health*` is a word: as a glob it could not be printed back without reading as
            // the start of a regex (`/health* x/`); `/api/*` is a glob
            Value::Bare(text)
                if is_glob(&text)
                    && !(text.starts_with('/') && lexer::may_read_as_regex(&text)) =>
            {
                self.term(Field::Message, Pred::Glob { pattern: text }, span)
            }
            Value::Bare(text) => self.message_literal(text, span, true),
            Value::Quoted { text, terminated } => {
                if text.is_empty() {
                    // an unterminated empty quote was diagnosed by the lexer
                    if terminated {
                        let text = "\"\"".to_owned();
                        self.diag(span, ErrorKind::NoSearchableText { text });
                    }
                    return None;
                }
                self.message_literal(text, span, true)
            }
            Value::Regex {
                pattern,
                case_insensitive,
                offsets,
            } => self.regex(Field::Message, pattern, case_insensitive, &offsets, span),
            // the lexer produces these only after a qualifier
            Value::Empty | Value::FreeText(_) | Value::Cmp { .. } | Value::Range { .. } => None,
        }
    }

    fn regex(
        &mut self,
        field: Field,
        pattern: String,
        case_insensitive: bool,
        offsets: &[usize],
        span: Span,
    ) -> Option<Expr> {
        match re::normalize(&pattern, self.limits) {
            Ok(pattern) => self.term(
                field,
                Pred::Regex {
                    pattern,
                    case_insensitive,
                },
                span,
            ),
            Err(e) => {
                let map = |i: usize| offsets.get(i).copied().unwrap_or(span.end);
                let mut at = Span {
                    start: map(e.start),
                    end: map(e.end),
                };
                if at.end <= at.start {
                    at = span;
                }
                self.diag(at, e.kind);
                // a bad regex is still a search for its text
                self.message_literal(pattern, span, false)
            }
        }
    }

    /// One value of `field:v1,v2,...` as a term, checked against what the field accepts.
    fn value_term(&mut self, field: &Field, name: &str, value: Value, span: Span) -> Option<Expr> {
        let empty = |name: &str| ErrorKind::EmptyValue {
            qualifier: name.to_owned(),
        };
        let pred = match value {
            Value::Empty => {
                self.diag(span, empty(name));
                return None;
            }
            Value::FreeText(text) => return self.message_literal(text, span, false),
            Value::Regex {
                pattern,
                case_insensitive,
                offsets,
            } => {
                if *field == Field::Time {
                    self.diag(span, ErrorKind::TimeNeedsComparison);
                    return None;
                }
                return self.regex(field.clone(), pattern, case_insensitive, &offsets, span);
            }
            Value::Quoted { text, terminated } => {
                if text.is_empty() {
                    if terminated {
                        self.diag(span, empty(name));
                    }
                    return None;
                }
                literal(text)
            }
            Value::Bare(text) if is_glob(&text) => Pred::Glob { pattern: text },
            Value::Bare(text) => Pred::Word { value: text },
            Value::Cmp { value, .. } if value.is_empty() => {
                self.diag(span, empty(name));
                return None;
            }
            Value::Cmp { op, value } => Pred::Compare { op, value },
            Value::Range { from, to } => {
                let side = |s: &Option<String>| s.as_deref().is_some_and(str::is_empty);
                let reason = if side(&from) || side(&to) {
                    Some("write a value or `*` on each side of `..`")
                } else if from.is_none() && to.is_none() {
                    Some("one side at least needs a value")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let range = range_text(&from, &to);
                    self.diag(span, ErrorKind::BadRange { range, reason });
                    return None;
                }
                Pred::Range { from, to }
            }
        };
        let pred = match self.check(field, pred) {
            Ok(pred) => pred,
            Err(kind) => {
                self.diag(span, kind);
                return None;
            }
        };
        if *field == Field::Message
            && let Pred::Word { value } | Pred::Phrase { value } = &pred
            && message_terms(value).is_empty()
        {
            let text = value.clone();
            self.diag(span, ErrorKind::NoSearchableText { text });
            return None;
        }
        self.term(field.clone(), pred, span)
    }

    /// Field-specific rules: levels, times, no comparisons on the message, non-empty ranges.
    fn check(&self, field: &Field, pred: Pred) -> Result<Pred, ErrorKind> {
        match field {
            Field::Message => match pred {
                Pred::Compare { .. } | Pred::Range { .. } => Err(ErrorKind::ComparisonOnMessage),
                p => Ok(p),
            },
            Field::Time => match pred {
                Pred::Compare { op, value } => Ok(Pred::Compare {
                    op,
                    value: time_value(&value)?,
                }),
                Pred::Range { from, to } => {
                    let from = from.as_deref().map(time_value).transpose()?;
                    let to = to.as_deref().map(time_value).transpose()?;
                    // normalised timestamps of equal length compare like the instants
                    non_empty_range(from, to)
                }
                _ => Err(ErrorKind::TimeNeedsComparison),
            },
            Field::Level => match pred {
                Pred::Word { value } | Pred::Phrase { value } => Ok(Pred::Word {
                    value: level_value(&value)?.to_owned(),
                }),
                Pred::Compare { op, value } => {
                    let value = level_value(&value)?.to_owned();
                    let pred = Pred::Compare { op, value };
                    if crate::eval::level_set(&pred).is_some_and(|s| s.is_empty()) {
                        let range =
                            format!("level:{}", crate::print::pred_text(&Field::Level, &pred));
                        return Err(ErrorKind::EmptyRange { range });
                    }
                    Ok(pred)
                }
                Pred::Range { from, to } => {
                    let level = |v: Option<String>| -> Result<Option<String>, ErrorKind> {
                        v.map(|v| level_value(&v).map(str::to_owned)).transpose()
                    };
                    let (from, to) = (level(from)?, level(to)?);
                    let rank = |v: &Option<String>| {
                        v.as_deref()
                            .and_then(|v| LEVELS.iter().position(|l| *l == v))
                    };
                    if let (Some(a), Some(b)) = (rank(&from), rank(&to))
                        && a > b
                    {
                        let range = range_text(&from, &to);
                        return Err(ErrorKind::EmptyRange { range });
                    }
                    Ok(Pred::Range { from, to })
                }
                p => Ok(p),
            },
            _ => match pred {
                Pred::Range { from, to } => non_empty_range(from, to),
                p => Ok(p),
            },
        }
    }
}

fn non_empty_range(from: Option<String>, to: Option<String>) -> Result<Pred, ErrorKind> {
    if let (Some(a), Some(b)) = (&from, &to)
        && a > b
    {
        let range = range_text(&from, &to);
        return Err(ErrorKind::EmptyRange { range });
    }
    Ok(Pred::Range { from, to })
}

fn range_text(from: &Option<String>, to: &Option<String>) -> String {
    let side = |s: &Option<String>| s.clone().unwrap_or_else(|| "*".into());
    format!("{}..{}", side(from), side(to))
}

fn time_value(text: &str) -> Result<String, ErrorKind> {
    time::normalize(text).map_err(|reason| ErrorKind::BadTime {
        value: text.to_owned(),
        reason,
    })
}

fn level_value(text: &str) -> Result<&'static str, ErrorKind> {
    normalize_level(text).ok_or_else(|| ErrorKind::UnknownLevel {
        value: text.to_owned(),
    })
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?'])
}

/// A quoted or literal value: a `Phrase` when it contains whitespace, else a `Word`.
fn literal(text: String) -> Pred {
    if text.contains(char::is_whitespace) {
        Pred::Phrase { value: text }
    } else {
        Pred::Word { value: text }
    }
}
