//! Regex validation and normalisation to the subset that Rust `regex` and Lucene `RegExp` (the
//! Elasticsearch `regexp` query) read the same way, so both backends use the stored pattern
//! verbatim.
//!
//! The subset: literals, `.`, bracket classes of literals and ranges (optionally negated), groups,
//! `|`, and the greedy repetitions `? * + {n} {n,} {n,m}`. Translated on the way:
//! - `\d \w \s` (and `\D \W \S`, and inside brackets the non-negated ones) become explicit ASCII
//!   classes, as do the POSIX classes `[:alpha:]` etc. that have a plain range form;
//! - `(?:...)` and named groups become plain groups;
//! - escapes like `\t` or `\x41` become the character itself (Lucene has no such escapes);
//! - characters special to either engine are escaped with a backslash (Lucene reads `\c` as the
//!   character `c`), except `<` and `>`, written `[<]` and `[>]` because Rust reads `\<` `\>` as
//!   word boundaries.
//!
//! Rejected: anchors and word boundaries (Lucene regexes are always anchored: message regexes
//! match anywhere in the line and keyword regexes match the whole value), lazy repetitions,
//! inline flags (use `/.../i`), Unicode classes, nested classes and class set operations.
//!
//! `.` matches any character in Lucene, newlines included; Rust consumers compile the pattern with
//! `dot_matches_new_line(true)` (see `eval::compile_regex`).

use crate::error::ErrorKind;
use crate::limits::Limits;
use regex_syntax::ast::{
    self, Ast, ClassAsciiKind, ClassPerlKind, ClassSet, ClassSetItem, GroupKind, RepetitionKind,
    RepetitionRange,
};

/// A problem at byte range `start..end` of the pattern.
#[derive(Debug)]
pub(crate) struct RegexError {
    pub kind: ErrorKind,
    pub start: usize,
    pub end: usize,
}

fn at(span: &ast::Span, kind: ErrorKind) -> RegexError {
    RegexError {
        kind,
        start: span.start.offset,
        end: span.end.offset,
    }
}

fn unsupported(span: &ast::Span, construct: &str) -> RegexError {
    at(
        span,
        ErrorKind::UnsupportedRegex {
            construct: construct.to_owned(),
        },
    )
}

/// Validates `pattern` (the text between the slashes) and returns its normal form.
pub(crate) fn normalize(pattern: &str, limits: &Limits) -> Result<String, RegexError> {
    let whole = |kind| RegexError {
        kind,
        start: 0,
        end: pattern.len(),
    };
    if pattern.is_empty() {
        return Err(whole(ErrorKind::BadRegex {
            reason: "empty pattern".into(),
        }));
    }
    if pattern.len() > limits.max_regex_bytes {
        return Err(whole(ErrorKind::RegexTooLong {
            len: pattern.len(),
            limit: limits.max_regex_bytes,
        }));
    }
    let depth = u32::try_from(limits.max_regex_depth).unwrap_or(u32::MAX);
    let parsed = ast::parse::ParserBuilder::new()
        .nest_limit(depth)
        .build()
        .parse(pattern);
    let tree = match parsed {
        Ok(tree) => tree,
        Err(e) => {
            let kind = match e.kind() {
                ast::ErrorKind::NestLimitExceeded(_) => ErrorKind::RegexTooDeep {
                    limit: limits.max_regex_depth,
                },
                k => ErrorKind::BadRegex {
                    reason: k.to_string(),
                },
            };
            return Err(at(e.span(), kind));
        }
    };
    let mut out = String::with_capacity(pattern.len() + 8);
    emit(&tree, &mut out, limits)?;
    // both engines must accept what we produce; a failure here is a bug in `emit`
    if let Err(e) = regex_syntax::ParserBuilder::new()
        .nest_limit(depth.saturating_add(2))
        .build()
        .parse(&out)
    {
        return Err(whole(ErrorKind::BadRegex {
            reason: format!("cannot normalise: {e}"),
        }));
    }
    Ok(out)
}

fn emit(node: &Ast, out: &mut String, limits: &Limits) -> Result<(), RegexError> {
    match node {
        Ast::Empty(_) => {}
        Ast::Flags(f) => return Err(unsupported(&f.span, "inline flags (use /.../i)")),
        Ast::Literal(l) => push_literal(out, l.c),
        Ast::Dot(_) => out.push('.'),
        Ast::Assertion(a) => {
            let what = match a.kind {
                ast::AssertionKind::StartLine
                | ast::AssertionKind::EndLine
                | ast::AssertionKind::StartText
                | ast::AssertionKind::EndText => {
                    "anchors (message regexes match anywhere in the line, keyword regexes match \
                     the whole value)"
                }
                _ => "word boundaries",
            };
            return Err(unsupported(&a.span, what));
        }
        Ast::ClassUnicode(c) => return Err(unsupported(&c.span, "unicode classes like \\p{L}")),
        Ast::ClassPerl(c) => {
            out.push('[');
            if c.negated {
                out.push('^');
            }
            out.push_str(perl_ranges(&c.kind));
            out.push(']');
        }
        Ast::ClassBracketed(c) => {
            out.push('[');
            if c.negated {
                out.push('^');
            }
            match &c.kind {
                ClassSet::Item(item) => class_item(item, out)?,
                ClassSet::BinaryOp(op) => {
                    return Err(unsupported(&op.span, "class set operations (&&, --, ~~)"));
                }
            }
            out.push(']');
        }
        Ast::Repetition(r) => {
            if !r.greedy {
                return Err(unsupported(&r.op.span, "lazy repetitions"));
            }
            emit(&r.ast, out, limits)?;
            match &r.op.kind {
                RepetitionKind::ZeroOrOne => out.push('?'),
                RepetitionKind::ZeroOrMore => out.push('*'),
                RepetitionKind::OneOrMore => out.push('+'),
                RepetitionKind::Range(range) => {
                    let (n, m) = match *range {
                        RepetitionRange::Exactly(n) => (n, Some(n)),
                        RepetitionRange::AtLeast(n) => (n, None),
                        RepetitionRange::Bounded(n, m) => (n, Some(m)),
                    };
                    let count = m.unwrap_or(n).max(n);
                    if count > limits.max_regex_repeat {
                        let limit = limits.max_regex_repeat;
                        return Err(at(
                            &r.op.span,
                            ErrorKind::RegexRepeatTooLarge { count, limit },
                        ));
                    }
                    let text = match *range {
                        RepetitionRange::Exactly(n) => format!("{{{n}}}"),
                        RepetitionRange::AtLeast(n) => format!("{{{n},}}"),
                        RepetitionRange::Bounded(n, m) => format!("{{{n},{m}}}"),
                    };
                    out.push_str(&text);
                }
            }
        }
        Ast::Group(g) => {
            if let GroupKind::NonCapturing(flags) = &g.kind
                && !flags.items.is_empty()
            {
                return Err(unsupported(&flags.span, "inline flags (use /.../i)"));
            }
            out.push('(');
            emit(&g.ast, out, limits)?;
            out.push(')');
        }
        Ast::Alternation(a) => {
            for (i, branch) in a.asts.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                if matches!(branch, Ast::Empty(_)) {
                    // Lucene has no empty branch; `()` is the empty string in both
                    out.push_str("()");
                } else {
                    emit(branch, out, limits)?;
                }
            }
        }
        Ast::Concat(c) => {
            for part in &c.asts {
                emit(part, out, limits)?;
            }
        }
    }
    Ok(())
}

/// The contents of a class matching a Perl class (ASCII only, as in Lucene).
fn perl_ranges(kind: &ClassPerlKind) -> &'static str {
    match kind {
        ClassPerlKind::Digit => "0-9",
        ClassPerlKind::Word => "0-9A-Za-z_",
        // raw characters: Lucene has no `\t`-style escapes
        ClassPerlKind::Space => " \t\n\r\x0C\x0B",
    }
}

fn class_item(item: &ClassSetItem, out: &mut String) -> Result<(), RegexError> {
    match item {
        ClassSetItem::Empty(_) => {}
        ClassSetItem::Literal(l) => push_class_literal(out, l.c),
        ClassSetItem::Range(r) => {
            push_class_literal(out, r.start.c);
            out.push('-');
            push_class_literal(out, r.end.c);
        }
        ClassSetItem::Ascii(a) => {
            let ranges = match a.kind {
                _ if a.negated => None,
                ClassAsciiKind::Alnum => Some("0-9A-Za-z"),
                ClassAsciiKind::Alpha => Some("A-Za-z"),
                ClassAsciiKind::Blank => Some(" \t"),
                ClassAsciiKind::Digit => Some("0-9"),
                ClassAsciiKind::Lower => Some("a-z"),
                ClassAsciiKind::Space => Some(" \t\n\r\x0C\x0B"),
                ClassAsciiKind::Upper => Some("A-Z"),
                ClassAsciiKind::Word => Some("0-9A-Za-z_"),
                ClassAsciiKind::Xdigit => Some("0-9A-Fa-f"),
                _ => None,
            };
            match ranges {
                Some(r) => out.push_str(r),
                None => return Err(unsupported(&a.span, "this POSIX class (use a range)")),
            }
        }
        ClassSetItem::Unicode(c) => {
            return Err(unsupported(&c.span, "unicode classes like \\p{L}"));
        }
        ClassSetItem::Perl(c) => {
            if c.negated {
                return Err(unsupported(
                    &c.span,
                    "negated classes like \\D inside brackets",
                ));
            }
            out.push_str(perl_ranges(&c.kind));
        }
        ClassSetItem::Bracketed(c) => return Err(unsupported(&c.span, "nested classes")),
        ClassSetItem::Union(u) => {
            for item in &u.items {
                class_item(item, out)?;
            }
        }
    }
    Ok(())
}

/// A literal outside brackets: escaped if special to Rust or Lucene.
fn push_literal(out: &mut String, c: char) {
    match c {
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        | '#' | '&' | '~' | '"' | '@' => {
            out.push('\\');
            out.push(c);
        }
        '<' | '>' => {
            out.push('[');
            out.push(c);
            out.push(']');
        }
        c => out.push(c),
    }
}

/// A literal inside brackets: ASCII punctuation escaped (safe in both), but `<` `>` raw, and `_`
/// raw as in the expansions of `\w`.
fn push_class_literal(out: &mut String, c: char) {
    if c.is_ascii_punctuation() && !matches!(c, '<' | '>' | '_') {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, String> {
        normalize(p, &Limits::default()).map_err(|e| format!("{} {}", e.kind.code(), e.kind))
    }

    #[test]
    fn translates_to_the_common_subset() {
        let cases = [
            (r"a\d+", "a[0-9]+"),
            (r"\w\s\S", "[0-9A-Za-z_][ \t\n\r\x0C\x0B][^ \t\n\r\x0C\x0B]"),
            (r"[\d_-]", r"[0-9_\-]"),
            (r"(?:ab|c)?", "(ab|c)?"),
            (r"(?P<x>a)", "(a)"),
            (r"a|", "a|()"),
            (r"\x41\t", "A\t"),
            ("a@b&c~d#e\"f<g>h", r#"a\@b\&c\~d\#e\"f[<]g[>]h"#),
            (r"[<>@]", r"[<>\@]"),
            (r"[[:alpha:]]", "[A-Za-z]"),
            (r"\.\*", r"\.\*"),
            ("a/b", "a/b"),
            ("é.", "é."),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
            // idempotent: the normal form normalises to itself
            assert_eq!(norm(want).as_deref(), Ok(want), "{want}");
        }
    }

    #[test]
    fn rejects_what_the_engines_disagree_on() {
        for p in [
            "^a",
            "a$",
            r"\bx",
            "a*?",
            "(?i)a",
            "(?i:a)",
            r"\pL",
            r"[\D]",
            "[a&&b]",
            "[[a]]",
            "[[:punct:]]",
        ] {
            let e = norm(p).unwrap_err();
            assert!(e.starts_with("unsupported_regex"), "{p}: {e}");
        }
        assert!(norm("a(").unwrap_err().starts_with("bad_regex"));
        assert!(norm("").unwrap_err().starts_with("bad_regex"));
        assert!(
            norm("a{101}")
                .unwrap_err()
                .starts_with("regex_repeat_too_large")
        );
        assert!(
            norm("a{2,101}")
                .unwrap_err()
                .starts_with("regex_repeat_too_large")
        );
        assert!(
            norm("((((((((((a))))))))))")
                .unwrap_err()
                .starts_with("regex_too_deep")
        );
        assert!(
            norm(&"a".repeat(257))
                .unwrap_err()
                .starts_with("regex_too_long")
        );
    }
}
