//! Query text → tokens. Lexing is contextual: after a known qualifier (`namespace:`) the value
//! syntax differs from free text (comma lists, comparisons, ranges; `/` always starts a regex), so
//! the lexer reads whole terms and leaves meaning (levels, times, regex validity) to the parser.
//!
//! Never panics: every slice is taken at an ASCII delimiter or at the end of the text.

use crate::ast::{CmpOp, Field, Span};
use crate::error::{Diagnostic, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokKind {
    LParen,
    RParen,
    And,
    Or,
    Not,
    /// `-` written directly before a term or `(`.
    Neg,
    /// A free-text value (targets the message).
    Text(Value),
    /// `field:value[,value...]`; `name` is the qualifier as written.
    Qualified {
        name: String,
        field: Field,
        values: Vec<(Value, Span)>,
    },
    /// `has:<field>` (`negated: false`) or `no:<field>`; `name` is the field text as written.
    Presence {
        negated: bool,
        name: String,
        name_span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Nothing after the qualifier or between commas.
    Empty,
    /// A bare word or glob (the parser tells them apart by `*` and `?`).
    Bare(String),
    /// A quoted value, unescaped; an unterminated quote (already diagnosed) runs to the end.
    Quoted { text: String, terminated: bool },
    /// `/pattern/` or `/pattern/i`, with `\/` unescaped. `offsets[i]` is the query byte offset of
    /// pattern byte `i` (one extra entry for the end), so regex errors point into the query.
    Regex {
        pattern: String,
        case_insensitive: bool,
        offsets: Vec<usize>,
    },
    /// Text that stands for itself on the message: an unterminated regex (already diagnosed).
    FreeText(String),
    /// `>v`, `>=v`, `<v`, `<=v` (v bare or quoted, possibly empty).
    Cmp { op: CmpOp, value: String },
    /// `a..b`; `*` is an open end (`None`); `Some("")` is a missing side (an error).
    Range {
        from: Option<String>,
        to: Option<String>,
    },
}

/// What a `name:` prefix means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Qualifier {
    Field(Field),
    Has,
    No,
}

/// A known qualifier name: the fixed names (ASCII case-insensitive), `label.<key>` with a key of
/// `[A-Za-z0-9._/-]`, and `has`/`no`. Anything else before a `:` is plain text.
pub(crate) fn resolve_qualifier(name: &str) -> Option<Qualifier> {
    if name.eq_ignore_ascii_case("has") {
        return Some(Qualifier::Has);
    }
    if name.eq_ignore_ascii_case("no") {
        return Some(Qualifier::No);
    }
    Field::from_qualifier(name).map(Qualifier::Field)
}

/// A field named by `has:`/`no:` (any qualifier but `has`/`no` themselves).
pub(crate) fn resolve_field(name: &str) -> Option<Field> {
    match resolve_qualifier(name)? {
        Qualifier::Field(f) => Some(f),
        Qualifier::Has | Qualifier::No => None,
    }
}

/// Whether `word` starts with a known `qualifier:` (so it would not lex as plain text).
pub(crate) fn has_qualifier_prefix(word: &str) -> bool {
    word.split_once(':')
        .is_some_and(|(name, _)| resolve_qualifier(name).is_some())
}

/// Characters that end a bare word; `,` too inside qualifier values.
pub(crate) fn is_delim(c: char, comma: bool) -> bool {
    c.is_whitespace() || c == '(' || c == ')' || c == '"' || (comma && c == ',')
}

/// The end of a bare word starting at `pos`.
pub(crate) fn scan_bare(src: &str, pos: usize, comma: bool) -> usize {
    src[pos..]
        .char_indices()
        .find(|&(_, c)| is_delim(c, comma))
        .map_or(src.len(), |(i, _)| pos + i)
}

pub(crate) struct RegexScan {
    pub pattern: String,
    pub case_insensitive: bool,
    pub offsets: Vec<usize>,
    /// Byte offset just after the closing `/` or `i`.
    pub end: usize,
}

/// Reads `/pattern/` or `/pattern/i` starting at the `/` at `pos`. The closing `/` must be
/// followed by the end, whitespace, `)` (or `,` in a value list); any other `/` is part of the
/// pattern, except that a pattern cannot contain whitespace after such an inner `/`, so free
/// text like `/api/v1 and /health` is two paths, not one regex. `\/` is an escaped `/`.
pub(crate) fn scan_regex(src: &str, pos: usize, in_list: bool) -> Option<RegexScan> {
    let boundary = |p: usize| {
        src[p..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == ')' || (in_list && c == ','))
    };
    let mut pattern = String::new();
    let mut offsets = Vec::new();
    let mut inner_slash = false;
    let mut chars = src[pos + 1..].char_indices().map(|(i, c)| (pos + 1 + i, c));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (j, next) = chars.next()?;
                if next == '/' {
                    push(&mut pattern, &mut offsets, '/', j);
                } else {
                    push(&mut pattern, &mut offsets, '\\', i);
                    push(&mut pattern, &mut offsets, next, j);
                }
            }
            '/' => {
                let after = i + 1;
                if boundary(after) {
                    offsets.push(i);
                    return Some(RegexScan {
                        pattern,
                        case_insensitive: false,
                        offsets,
                        end: after,
                    });
                }
                if src[after..].starts_with('i') && boundary(after + 1) {
                    offsets.push(i);
                    return Some(RegexScan {
                        pattern,
                        case_insensitive: true,
                        offsets,
                        end: after + 1,
                    });
                }
                inner_slash = true;
                push(&mut pattern, &mut offsets, '/', i);
            }
            c if c.is_whitespace() && inner_slash => return None,
            c => push(&mut pattern, &mut offsets, c, i),
        }
    }
    None
}

/// Whether a free-text token starting with `/` could be read as the start of a regex when
/// followed by the end, a space or `)`: a regex may span spaces (`/a b/`), so it is tried with a
/// closing `/` further on. Tokens like `/api/v1` cannot (the scan stops at whitespace after an
/// inner `/`); `/health` can (`/health x/` is a regex).
pub(crate) fn may_read_as_regex(token: &str) -> bool {
    ["", " x/", ") x/"]
        .iter()
        .any(|tail| scan_regex(&format!("{token}{tail}"), 0, false).is_some())
}

fn push(pattern: &mut String, offsets: &mut Vec<usize>, c: char, at: usize) {
    pattern.push(c);
    // every byte of the char maps to where the char was written
    offsets.extend(std::iter::repeat_n(at, c.len_utf8()));
}

/// Reads a `"quoted"` value starting at the `"` at `pos`: `\"` and `\\` are escapes, any other
/// backslash is kept. Returns the text, whether it was closed, and the end offset.
pub(crate) fn scan_quoted(src: &str, pos: usize) -> (String, bool, usize) {
    let mut text = String::new();
    let mut chars = src[pos + 1..].char_indices().map(|(i, c)| (pos + 1 + i, c));
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (text, true, i + 1),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => text.push(e),
                Some((_, e)) => {
                    text.push('\\');
                    text.push(e);
                }
                None => text.push('\\'),
            },
            c => text.push(c),
        }
    }
    (text, false, src.len())
}

pub(crate) fn lex(src: &str, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut lx = Lexer {
        src,
        pos: 0,
        diags,
        out: Vec::new(),
    };
    lx.run();
    lx.out
}

struct Lexer<'a, 'd> {
    src: &'a str,
    pos: usize,
    diags: &'d mut Vec<Diagnostic>,
    out: Vec<Token>,
}

impl Lexer<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, at: usize) -> Option<char> {
        self.src.get(at..).and_then(|s| s.chars().next())
    }

    fn emit(&mut self, kind: TokKind, start: usize, end: usize) {
        self.out.push(Token {
            kind,
            span: Span { start, end },
        });
        self.pos = end;
    }

    fn diag(&mut self, start: usize, end: usize, kind: ErrorKind) {
        self.diags.push(Diagnostic::new(Span { start, end }, &kind));
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => self.pos += c.len_utf8(),
                '(' => self.emit(TokKind::LParen, start, start + 1),
                ')' => self.emit(TokKind::RParen, start, start + 1),
                '-' => match self.peek_at(start + 1) {
                    Some(n) if !n.is_whitespace() && n != ')' => {
                        self.emit(TokKind::Neg, start, start + 1)
                    }
                    _ => {
                        self.diag(start, start + 1, ErrorKind::DanglingNegation { op: "-" });
                        self.pos += 1;
                    }
                },
                '"' => {
                    let (text, terminated, end) = self.quoted(start);
                    self.emit(
                        TokKind::Text(Value::Quoted { text, terminated }),
                        start,
                        end,
                    );
                }
                '/' => match scan_regex(self.src, start, false) {
                    Some(r) => self.emit(
                        TokKind::Text(Value::Regex {
                            pattern: r.pattern,
                            case_insensitive: r.case_insensitive,
                            offsets: r.offsets,
                        }),
                        start,
                        r.end,
                    ),
                    None => self.bare(start),
                },
                _ => self.bare(start),
            }
        }
    }

    fn quoted(&mut self, start: usize) -> (String, bool, usize) {
        let (text, terminated, end) = scan_quoted(self.src, start);
        if !terminated {
            self.diag(start, end, ErrorKind::UnterminatedQuote);
        }
        (text, terminated, end)
    }

    /// A bare token: an operator, a qualified term, or free text.
    fn bare(&mut self, start: usize) {
        let end = scan_bare(self.src, start, false);
        let word = &self.src[start..end];
        let op = match word {
            "AND" => Some(TokKind::And),
            "OR" => Some(TokKind::Or),
            "NOT" => Some(TokKind::Not),
            _ => None,
        };
        if let Some(op) = op {
            return self.emit(op, start, end);
        }
        if let Some((name, _)) = word.split_once(':') {
            let value_at = start + name.len() + 1;
            match resolve_qualifier(name) {
                Some(Qualifier::Field(field)) => {
                    let name = name.to_owned();
                    let (values, end) = self.values(value_at, &name);
                    return self.emit(
                        TokKind::Qualified {
                            name,
                            field,
                            values,
                        },
                        start,
                        end,
                    );
                }
                Some(q @ (Qualifier::Has | Qualifier::No)) => {
                    let field_text = word[name.len() + 1..].to_owned();
                    let kind = TokKind::Presence {
                        negated: q == Qualifier::No,
                        name: field_text,
                        name_span: Span {
                            start: value_at,
                            end,
                        },
                    };
                    return self.emit(kind, start, end);
                }
                None => {}
            }
        }
        let text = word.to_owned();
        self.emit(TokKind::Text(Value::Bare(text)), start, end);
    }

    /// A comma list of values after `qualifier:`; returns them and the end of the last one.
    fn values(&mut self, mut pos: usize, qualifier: &str) -> (Vec<(Value, Span)>, usize) {
        let mut values = Vec::new();
        loop {
            let (value, end) = self.value(pos, qualifier);
            values.push((value, Span { start: pos, end }));
            if self.peek_at(end) == Some(',') {
                pos = end + 1;
            } else {
                return (values, end);
            }
        }
    }

    fn value(&mut self, pos: usize, qualifier: &str) -> (Value, usize) {
        let Some(c) = self.peek_at(pos) else {
            return (Value::Empty, pos);
        };
        match c {
            '"' => {
                let (text, terminated, end) = self.quoted(pos);
                (Value::Quoted { text, terminated }, end)
            }
            '/' => match scan_regex(self.src, pos, true) {
                Some(r) => (
                    Value::Regex {
                        pattern: r.pattern,
                        case_insensitive: r.case_insensitive,
                        offsets: r.offsets,
                    },
                    r.end,
                ),
                None => {
                    let end = scan_bare(self.src, pos, true);
                    let qualifier = qualifier.to_owned();
                    self.diag(pos, end, ErrorKind::UnterminatedRegex { qualifier });
                    (Value::FreeText(self.src[pos + 1..end].to_owned()), end)
                }
            },
            '>' | '<' => {
                let eq = self.peek_at(pos + 1) == Some('=');
                let op = match (c, eq) {
                    ('>', false) => CmpOp::Gt,
                    ('>', true) => CmpOp::Ge,
                    ('<', false) => CmpOp::Lt,
                    _ => CmpOp::Le,
                };
                let at = pos + 1 + usize::from(eq);
                if self.peek_at(at) == Some('"') {
                    let (value, _, end) = self.quoted(at);
                    (Value::Cmp { op, value }, end)
                } else {
                    let end = scan_bare(self.src, at, true);
                    let value = self.src[at..end].to_owned();
                    (Value::Cmp { op, value }, end)
                }
            }
            c if is_delim(c, true) => (Value::Empty, pos),
            _ => {
                let end = scan_bare(self.src, pos, true);
                let text = &self.src[pos..end];
                let value = match text.split_once("..") {
                    Some((from, to)) => {
                        let open = |s: &str| (s != "*").then(|| s.to_owned());
                        Value::Range {
                            from: open(from),
                            to: open(to),
                        }
                    }
                    None => Value::Bare(text.to_owned()),
                };
                (value, end)
            }
        }
    }
}
