//! [`Expr`] → canonical query text, such that `parse_strict(print(e)) == e` up to spans for every
//! expression the parser produces (and every well-formed one; see `tests/roundtrip.rs`).
//!
//! Canonical form: free text for message terms when it reads back the same, `field:value`
//! otherwise; an `Or` of terms on one keyword field as a comma list; `OR` between other
//! alternatives, parenthesised inside an `And`; `-term`, `-(...)`, `no:field`; a value quoted when
//! bare text would read differently (whitespace, quotes, parentheses, commas, a leading `-`, `AND`
//! `OR` `NOT`, glob characters in a word, a `qualifier:` prefix, a regex-like `/.../`, ...); time
//! values as short as they parse back (`2026-11-26`, `2026-11-26T10:00:00Z`).
//!
//! The printed text can be a little longer than what was parsed (level aliases are resolved,
//! adjacent tokens get a space), so a query at the length limit may print past it.

use crate::ast::{Expr, Field, Pred, Term};
use crate::lexer::{has_qualifier_prefix, is_delim, may_read_as_regex};
use crate::parser::time;
use std::fmt::{self, Write};

/// The canonical text of `expr`. `Expr::All` prints as the empty string.
pub fn print(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr, Ctx::Top);
    out
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    And,
    Or,
}

fn write_expr(out: &mut String, expr: &Expr, ctx: Ctx) {
    match expr {
        Expr::All => {}
        Expr::Term(t) => write_term(out, t),
        Expr::Not { arg } => match arg.as_ref() {
            Expr::Term(Term {
                field,
                pred: Pred::Exists,
                ..
            }) => {
                out.push_str("no:");
                out.push_str(&field.qualifier());
            }
            Expr::Term(t) => {
                out.push('-');
                write_term(out, t);
            }
            Expr::Or { args } if list_field(args).is_some() => {
                out.push('-');
                write_list(out, args);
            }
            inner => {
                out.push_str("-(");
                write_expr(out, inner, Ctx::Top);
                out.push(')');
            }
        },
        Expr::And { args } => {
            let parens = ctx == Ctx::And;
            if parens {
                out.push('(');
            }
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_expr(out, arg, Ctx::And);
            }
            if parens {
                out.push(')');
            }
        }
        Expr::Or { args } if list_field(args).is_some() => write_list(out, args),
        Expr::Or { args } => {
            let parens = ctx != Ctx::Top;
            if parens {
                out.push('(');
            }
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(" OR ");
                }
                write_expr(out, arg, Ctx::Or);
            }
            if parens {
                out.push(')');
            }
        }
    }
}

/// The field of an `Or` that prints as `field:a,b`: terms on one keyword field, every value
/// printable in a list.
fn list_field(args: &[Expr]) -> Option<&Field> {
    let mut field = None;
    for arg in args {
        let Expr::Term(t) = arg else { return None };
        if t.field == Field::Message
            || t.pred == Pred::Exists
            || field.is_some_and(|f| f != &t.field)
        {
            return None;
        }
        field = Some(&t.field);
    }
    field
}

fn write_list(out: &mut String, args: &[Expr]) {
    let mut first = true;
    for arg in args {
        if let Expr::Term(t) = arg {
            if first {
                out.push_str(&t.field.qualifier());
                out.push(':');
            } else {
                out.push(',');
            }
            first = false;
            out.push_str(&pred_text(&t.field, &t.pred));
        }
    }
}

fn write_term(out: &mut String, t: &Term) {
    if t.pred == Pred::Exists {
        out.push_str("has:");
        out.push_str(&t.field.qualifier());
        return;
    }
    if t.field == Field::Message {
        match &t.pred {
            Pred::Word { value } if free_word_ok(value, false) => return out.push_str(value),
            Pred::Word { value } | Pred::Phrase { value } => return quote(out, value),
            Pred::Glob { pattern } if free_word_ok(pattern, true) => return out.push_str(pattern),
            Pred::Regex { .. } => return out.push_str(&pred_text(&t.field, &t.pred)),
            _ => {}
        }
    }
    out.push_str(&t.field.qualifier());
    out.push(':');
    out.push_str(&pred_text(&t.field, &t.pred));
}

/// The text of a predicate after `field:`.
pub(crate) fn pred_text(field: &Field, pred: &Pred) -> String {
    let mut out = String::new();
    let time = |v: &str| {
        if *field == Field::Time {
            time::shorten(v)
        } else {
            v.to_owned()
        }
    };
    match pred {
        Pred::Word { value } if value_ok(value, false) => out.push_str(value),
        Pred::Word { value } | Pred::Phrase { value } => quote(&mut out, value),
        // a glob has no quoting; one that cannot be written bare is out of the grammar
        Pred::Glob { pattern } => out.push_str(pattern),
        Pred::Regex {
            pattern,
            case_insensitive,
        } => {
            out.push('/');
            let mut chars = pattern.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        out.push('\\');
                        out.extend(chars.next());
                    }
                    '/' => out.push_str("\\/"),
                    c => out.push(c),
                }
            }
            out.push('/');
            if *case_insensitive {
                out.push('i');
            }
        }
        Pred::Compare { op, value } => {
            out.push_str(op.as_str());
            let value = time(value);
            if !value.is_empty()
                && !value.starts_with('=')
                && !value.contains(|c| is_delim(c, true))
            {
                out.push_str(&value);
            } else {
                quote(&mut out, &value);
            }
        }
        Pred::Range { from, to } => {
            let _ = write!(
                out,
                "{}..{}",
                from.as_deref().map_or("*".into(), time),
                to.as_deref().map_or("*".into(), time)
            );
        }
        Pred::Exists => {}
    }
    out
}

/// Whether a message word (or glob) reads back as itself in free text.
fn free_word_ok(text: &str, glob: bool) -> bool {
    !text.is_empty()
        && !text.contains(|c| is_delim(c, false))
        && text.contains(['*', '?']) == glob
        && !matches!(text, "AND" | "OR" | "NOT")
        && !text.starts_with('-')
        && (!text.starts_with('/') || !may_read_as_regex(text))
        && !has_qualifier_prefix(text)
}

/// Whether a value reads back as itself after `field:` (a word, or a glob when `glob`).
fn value_ok(text: &str, glob: bool) -> bool {
    !text.is_empty()
        && !text.contains(|c| is_delim(c, true))
        && text.contains(['*', '?']) == glob
        && !text.starts_with(['/', '>', '<'])
        && !text.contains("..")
}

fn quote(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}
