//! Evaluates a query against one record in memory: live tail, post-filters, and the oracle the
//! backends' tests compare against. The semantics here are the definition of the language:
//!
//! - message `Word`/`Phrase`: the value's [`message_terms`] appear as consecutive tokens of the
//!   message's terms (one token, or a phrase); a value without tokens matches nothing (as an
//!   analysed phrase query with no terms in Elasticsearch);
//! - message `Glob` (always case-insensitive) and `Regex` (case-insensitive with `/i`) match
//!   anywhere in the line, like grep;
//! - keyword fields: `Word`/`Phrase` are exact equality; `Glob`/`Regex` match the whole value,
//!   case-sensitive unless `/i`; `Compare`/`Range` compare strings byte-wise;
//! - `level` comparisons and ranges use the order of [`LEVELS`] (a record without a level, or
//!   with another value, never matches them); `time` compares [`Doc::timestamp_ns`];
//! - `Exists`: the field is present; the message and the time always are.
//!
//! Regexes compile with `dot_matches_new_line(true)` (Lucene's `.` matches any character) and a
//! size limit ([`REGEX_SIZE_LIMIT`]).

use crate::ast::{CmpOp, Expr, Field, LEVELS, Pred, Term};
use crate::parser::normalize_level;
use crate::parser::time::{format_timestamp, parse_timestamp};
use crate::{message_terms, message_tokens};
use regex::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;

/// One record as the evaluator sees it.
pub trait Doc {
    /// Nanoseconds since the Unix epoch (`@timestamp`).
    fn timestamp_ns(&self) -> i64;
    fn message(&self) -> &str;
    /// A keyword field; `Field::Label(k)` is the label `k`. Not asked for `Message` or `Time`.
    fn field(&self, f: &Field) -> Option<&str>;
}

/// Why a query cannot be compiled for evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("regex `{pattern}` does not compile: {reason}")]
    Regex { pattern: String, reason: String },
}

/// Bytes a compiled regex (and each of its lazy DFAs) may use.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One set of options for both regex flavours.
macro_rules! build_regex {
    ($builder:ty, $pattern:expr, $case_insensitive:expr, $whole_value:expr) => {{
        let pattern: &str = $pattern;
        let text = if $whole_value {
            Cow::Owned(format!(r"\A(?:{pattern})\z"))
        } else {
            Cow::Borrowed(pattern)
        };
        <$builder>::new(&text)
            .case_insensitive($case_insensitive)
            .dot_matches_new_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| EvalError::Regex {
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })
    }};
}

/// Compiles a `Pred::Regex` pattern (or a [`glob_to_regex`] output) the way the language means it:
/// `.` matches newlines too, and with `whole_value` the match must cover the whole text (keyword
/// fields) instead of any part of it (the message).
pub fn compile_regex(
    pattern: &str,
    case_insensitive: bool,
    whole_value: bool,
) -> Result<Regex, EvalError> {
    build_regex!(RegexBuilder, pattern, case_insensitive, whole_value)
}

/// [`compile_regex`] for haystacks that are UTF-8 but held as bytes (the embedded index's
/// message column): the same matches, without validating each haystack first.
pub fn compile_bytes_regex(
    pattern: &str,
    case_insensitive: bool,
    whole_value: bool,
) -> Result<regex::bytes::Regex, EvalError> {
    build_regex!(
        regex::bytes::RegexBuilder,
        pattern,
        case_insensitive,
        whole_value
    )
}

/// A glob (`*` any run of characters, newlines included; `?` one character; everything else
/// literal) as a Rust regex. Not anchored: wrap it (or use `compile_regex(.., true)`) to match a
/// whole value.
pub fn glob_to_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut buf = [0u8; 4];
    for c in pattern.chars() {
        match c {
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            c => out.push_str(&regex_syntax::escape(c.encode_utf8(&mut buf))),
        }
    }
    out
}

/// The explicit set of levels (in [`LEVELS`] order) a level `Word`, `Compare` or `Range` stands
/// for: `level:>=warn` → `["warn", "error", "fatal"]`. `None` for other predicates or values
/// that are not levels. Both backends lower level conditions to a terms query on this set.
pub fn level_set(pred: &Pred) -> Option<Vec<&'static str>> {
    let rank = |v: &str| {
        let v = normalize_level(v)?;
        LEVELS.iter().position(|l| *l == v)
    };
    let (lo, hi) = match pred {
        Pred::Word { value } => {
            let r = rank(value)?;
            (r, r)
        }
        Pred::Compare { op, value } => {
            let r = rank(value)?;
            match op {
                // an empty set is lo > hi
                CmpOp::Gt => (r + 1, LEVELS.len() - 1),
                CmpOp::Ge => (r, LEVELS.len() - 1),
                CmpOp::Lt if r == 0 => (1, 0),
                CmpOp::Lt => (0, r - 1),
                CmpOp::Le => (0, r),
            }
        }
        Pred::Range { from, to } => {
            let lo = from.as_deref().map_or(Some(0), rank)?;
            let hi = to.as_deref().map_or(Some(LEVELS.len() - 1), rank)?;
            (lo, hi)
        }
        _ => return None,
    };
    Some(
        LEVELS
            .iter()
            .enumerate()
            .filter(|(i, _)| (lo..=hi).contains(i))
            .map(|(_, l)| *l)
            .collect(),
    )
}

/// Whether `doc` matches `expr`. Compiles the query's regexes on every call (use a [`Matcher`]
/// for many records); a regex that does not compile matches nothing.
pub fn matches(expr: &Expr, doc: &impl Doc) -> bool {
    Matcher::compile(expr, false)
        .map(|m| m.matches(doc))
        .unwrap_or(false)
}

/// Byte ranges of `message` matched by the query's positive message terms (words, phrases,
/// globs, regexes not under a `Not`), sorted and merged; for highlighting hits.
pub fn highlight(expr: &Expr, message: &str) -> Vec<(usize, usize)> {
    Matcher::compile(expr, false)
        .map(|m| m.highlight(message))
        .unwrap_or_default()
}

/// A query compiled once (regexes, tokenised words, level sets, time bounds) to evaluate many
/// records.
#[derive(Debug)]
pub struct Matcher {
    root: Node,
}

#[derive(Debug)]
enum Node {
    All,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cond(Field, Cond),
}

#[derive(Debug)]
enum Cond {
    /// Consecutive message terms.
    Tokens(Vec<String>),
    /// Message: anywhere in the line; other fields: anchored to the whole value.
    Pattern(Regex),
    Equals(String),
    Compare(CmpOp, String),
    Range(Option<String>, Option<String>),
    /// By rank in `LEVELS`.
    Levels(Vec<bool>),
    /// Inclusive nanosecond bounds.
    Time(i128, i128),
    Exists,
    Never,
}

impl Matcher {
    pub fn new(expr: &Expr) -> Result<Self, EvalError> {
        Self::compile(expr, true)
    }

    /// With `strict: false` a regex that does not compile becomes a condition that never holds.
    fn compile(expr: &Expr, strict: bool) -> Result<Self, EvalError> {
        Ok(Matcher {
            root: node(expr, strict)?,
        })
    }

    pub fn matches(&self, doc: &impl Doc) -> bool {
        let tokens = OnceCell::new();
        eval(&self.root, doc, &tokens)
    }

    /// See [`highlight`].
    pub fn highlight(&self, message: &str) -> Vec<(usize, usize)> {
        let mut conds = Vec::new();
        positive_message_conds(&self.root, &mut conds);
        if conds.is_empty() {
            return Vec::new();
        }
        let spans: Vec<(usize, usize)> = message_tokens(message).collect();
        let terms: Vec<String> = spans
            .iter()
            .map(|&(s, e)| message[s..e].to_lowercase())
            .collect();
        let mut hits = Vec::new();
        for cond in conds {
            match cond {
                Cond::Tokens(needle) if !needle.is_empty() => {
                    for (i, window) in terms.windows(needle.len()).enumerate() {
                        if window == needle.as_slice() {
                            hits.push((spans[i].0, spans[i + needle.len() - 1].1));
                        }
                    }
                }
                Cond::Pattern(re) => {
                    hits.extend(
                        re.find_iter(message)
                            .filter(|m| !m.is_empty())
                            .map(|m| (m.start(), m.end())),
                    );
                }
                _ => {}
            }
        }
        hits.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
        for (s, e) in hits {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }
}

fn positive_message_conds<'a>(node: &'a Node, out: &mut Vec<&'a Cond>) {
    match node {
        Node::And(args) | Node::Or(args) => {
            for a in args {
                positive_message_conds(a, out);
            }
        }
        Node::Cond(Field::Message, c) => out.push(c),
        Node::All | Node::Not(_) | Node::Cond(..) => {}
    }
}

fn node(expr: &Expr, strict: bool) -> Result<Node, EvalError> {
    let all = |args: &[Expr]| {
        args.iter()
            .map(|a| node(a, strict))
            .collect::<Result<_, _>>()
    };
    Ok(match expr {
        Expr::All => Node::All,
        Expr::And { args } => Node::And(all(args)?),
        Expr::Or { args } => Node::Or(all(args)?),
        Expr::Not { arg } => Node::Not(Box::new(node(arg, strict)?)),
        Expr::Term(t) => Node::Cond(t.field.clone(), cond(t, strict)?),
    })
}

fn cond(t: &Term, strict: bool) -> Result<Cond, EvalError> {
    let message = t.field == Field::Message;
    let regex = |pattern: &str, ci: bool| match compile_regex(pattern, ci, !message) {
        Ok(re) => Ok(Cond::Pattern(re)),
        Err(e) if strict => Err(e),
        Err(_) => Ok(Cond::Never),
    };
    if t.field == Field::Level
        && matches!(
            t.pred,
            Pred::Word { .. } | Pred::Compare { .. } | Pred::Range { .. }
        )
        && let Some(set) = level_set(&t.pred)
    {
        return Ok(Cond::Levels(
            LEVELS.iter().map(|l| set.contains(l)).collect(),
        ));
    }
    if t.field == Field::Time {
        let ns = |v: &str| parse_timestamp(v);
        let bounds = match &t.pred {
            Pred::Word { value } | Pred::Phrase { value } => ns(value).map(|v| (v, v)),
            Pred::Compare { op, value } => ns(value).map(|v| match op {
                CmpOp::Gt => (v + 1, i128::MAX),
                CmpOp::Ge => (v, i128::MAX),
                CmpOp::Lt => (i128::MIN, v - 1),
                CmpOp::Le => (i128::MIN, v),
            }),
            Pred::Range { from, to } => {
                let lo = from.as_deref().map_or(Some(i128::MIN), ns);
                let hi = to.as_deref().map_or(Some(i128::MAX), ns);
                lo.zip(hi)
            }
            _ => None,
        };
        if let Some((lo, hi)) = bounds {
            return Ok(Cond::Time(lo, hi));
        }
    }
    Ok(match &t.pred {
        Pred::Word { value } | Pred::Phrase { value } if message => {
            Cond::Tokens(message_terms(value))
        }
        Pred::Word { value } | Pred::Phrase { value } => Cond::Equals(value.clone()),
        Pred::Glob { pattern } => return regex(&glob_to_regex(pattern), message),
        Pred::Regex {
            pattern,
            case_insensitive,
        } => return regex(pattern, *case_insensitive),
        Pred::Compare { op, value } => Cond::Compare(*op, value.clone()),
        Pred::Range { from, to } => Cond::Range(from.clone(), to.clone()),
        Pred::Exists => Cond::Exists,
    })
}

fn eval<D: Doc>(node: &Node, doc: &D, tokens: &OnceCell<Vec<String>>) -> bool {
    match node {
        Node::All => true,
        Node::And(args) => args.iter().all(|a| eval(a, doc, tokens)),
        Node::Or(args) => args.iter().any(|a| eval(a, doc, tokens)),
        Node::Not(arg) => !eval(arg, doc, tokens),
        Node::Cond(field, cond) => match cond {
            Cond::Never => false,
            Cond::Tokens(needle) => {
                let hay = tokens.get_or_init(|| message_terms(doc.message()));
                !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_slice())
            }
            Cond::Levels(set) => doc
                .field(&Field::Level)
                .and_then(|l| LEVELS.iter().position(|x| *x == l))
                .is_some_and(|r| set.get(r).copied().unwrap_or(false)),
            Cond::Time(lo, hi) => (*lo..=*hi).contains(&i128::from(doc.timestamp_ns())),
            Cond::Exists => match field {
                Field::Message | Field::Time => true,
                f => doc.field(f).is_some(),
            },
            Cond::Pattern(re) => value(field, doc).is_some_and(|v| re.is_match(&v)),
            Cond::Equals(want) => value(field, doc).is_some_and(|v| v == want.as_str()),
            Cond::Compare(op, bound) => value(field, doc).is_some_and(|v| {
                let ord = v.as_ref().cmp(bound.as_str());
                match op {
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Ge => ord != Ordering::Less,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Le => ord != Ordering::Greater,
                }
            }),
            Cond::Range(from, to) => value(field, doc).is_some_and(|v| {
                from.as_deref().is_none_or(|f| v.as_ref() >= f)
                    && to.as_deref().is_none_or(|t| v.as_ref() <= t)
            }),
        },
    }
}

/// The text of a field: the message, the formatted timestamp, or a keyword field.
fn value<'d, D: Doc>(field: &Field, doc: &'d D) -> Option<Cow<'d, str>> {
    match field {
        Field::Message => Some(Cow::Borrowed(doc.message())),
        Field::Time => format_timestamp(i128::from(doc.timestamp_ns())).map(Cow::Owned),
        f => doc.field(f).map(Cow::Borrowed),
    }
}
