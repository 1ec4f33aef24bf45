//! Property tests: the parsers never panic, and `print` is the inverse of `parse_strict` up to
//! spans, for parsed queries and for generated well-formed expressions.
#![allow(clippy::unwrap_used)]

use nevermore_lang::eval::{Doc, highlight, matches};
use nevermore_lang::{
    CmpOp, Expr, Field, LEVELS, Limits, Pred, Span, Term, format_timestamp, parse_lenient,
    parse_strict, print,
};
use proptest::prelude::*;
use proptest::sample::select;

/// Pieces of the grammar, so random strings hit its corners far more often than plain unicode.
const PIECES: &[&str] = &[
    "(",
    ")",
    "\"",
    "/",
    "/i",
    "\\",
    "\\\"",
    "\\/",
    "-",
    "--",
    ",",
    ":",
    "..",
    "*",
    "?",
    ">",
    ">=",
    "<",
    "<=",
    "=",
    " ",
    "  ",
    "\t",
    "\n",
    "AND",
    "OR",
    "NOT",
    "namespace:",
    "pod:",
    "label.",
    "label.app.kubernetes.io/name:",
    "has:",
    "no:",
    "level:",
    "time:",
    "message:",
    "warn",
    "warning",
    "fatal",
    "2026-11-26",
    "T10:00:00Z",
    "+02:00",
    ".5",
    "a",
    "x",
    "0",
    "é",
    "東",
    "\u{a0}",
    "[",
    "]",
    "{",
    "}",
    "{1000}",
    "|",
    "^",
    "$",
    "\\d",
    "\\b",
    "(?i)",
    "*?",
    "@",
    "<",
];

fn query_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => select(PIECES).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-z]{1,6}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Limits small enough for random queries to cross them.
fn tiny() -> Limits {
    Limits {
        max_query_bytes: 40,
        max_terms: 3,
        max_depth: 2,
        max_regex_bytes: 8,
        max_regex_repeat: 5,
        max_regex_depth: 2,
    }
}

/// Printing may lengthen a query a little (resolved aliases, added spaces); generated
/// expressions may be larger than the default limits allow.
fn relaxed() -> Limits {
    Limits {
        max_query_bytes: 1 << 20,
        max_terms: 1000,
        max_depth: 100,
        ..Limits::default()
    }
}

struct TestDoc;

impl Doc for TestDoc {
    fn timestamp_ns(&self) -> i64 {
        1_795_000_000_000_000_000
    }
    fn message(&self) -> &str {
        "GET /api/v1 warn x a é 東 connection refused"
    }
    fn field(&self, f: &Field) -> Option<&str> {
        match f {
            Field::Level => Some("warn"),
            Field::Namespace => Some("x"),
            _ => None,
        }
    }
}

fn check_round_trip(text: &str, limits: &Limits) -> Result<(), TestCaseError> {
    let parsed = parse_lenient(text, limits);
    // what the lenient parser understood is a valid query that prints back to itself
    let printed = print(&parsed.expr);
    let again = parse_strict(&printed, &relaxed());
    prop_assert!(again.is_ok(), "{text:?} → {printed:?}: {:?}", again);
    if let Ok(again) = again {
        prop_assert_eq!(
            again.erase_spans(),
            parsed.expr.erase_spans(),
            "{:?} → {:?}",
            text,
            printed
        );
    }
    match parse_strict(text, limits) {
        Ok(e) => {
            prop_assert!(parsed.diagnostics.is_empty());
            prop_assert_eq!(&e, &parsed.expr);
        }
        Err(err) => {
            prop_assert!(!parsed.diagnostics.is_empty());
            prop_assert!(err.span.start <= err.span.end && err.span.end <= text.len());
            prop_assert!(!err.message.is_empty());
        }
    }
    for d in &parsed.diagnostics {
        prop_assert!(
            d.span.start <= d.span.end && d.span.end <= text.len(),
            "{d:?}"
        );
        prop_assert!(text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end));
    }
    let _ = matches(&parsed.expr, &TestDoc);
    let _ = highlight(&parsed.expr, TestDoc.message());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn grammar_soup_never_panics_and_round_trips(text in query_text()) {
        check_round_trip(&text, &Limits::default())?;
        check_round_trip(&text, &tiny())?;
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check_round_trip(&text, &Limits::default())?;
        check_round_trip(&text, &tiny())?;
    }

    #[test]
    fn generated_expressions_round_trip(e in expr()) {
        let text = print(&e);
        let parsed = parse_strict(&text, &relaxed());
        prop_assert!(parsed.is_ok(), "{:?} → {:?}: {:?}", e, text, parsed);
        if let Ok(parsed) = parsed {
            prop_assert_eq!(parsed.erase_spans(), e, "{}", text);
        }
    }
}

// ---- a strategy of well-formed expressions (normal form, values the parser would produce) ----

fn term(field: Field, pred: Pred) -> Expr {
    Expr::Term(Term {
        field,
        pred,
        span: Span { start: 0, end: 0 },
    })
}

fn combine(args: Vec<Expr>, and: bool) -> Expr {
    let mut flat = Vec::new();
    for a in args {
        match a {
            Expr::And { args } if and => flat.extend(args),
            Expr::Or { args } if !and => flat.extend(args),
            a => flat.push(a),
        }
    }
    if and {
        Expr::And { args: flat }
    } else {
        Expr::Or { args: flat }
    }
}

fn negate(e: Expr) -> Expr {
    match e {
        Expr::Not { arg } => *arg,
        e => Expr::Not { arg: Box::new(e) },
    }
}

/// Any non-whitespace text, punctuation of the grammar included (the printer quotes it).
fn any_word() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        3 => select(&['a', 'z', '0', '9', 'é', '東'][..]),
        2 => select(&['"', '\\', '(', ')', ',', '*', '?', ':', '-', '/', '>', '<', '=', '.', '\''][..]),
    ];
    prop::collection::vec(c, 1..8).prop_map(|v| v.into_iter().collect())
}

/// A message word: something the tokenizer finds at least one token in.
fn message_word() -> impl Strategy<Value = String> {
    (any_word(), "[a-z0-9é]{1,4}", any_word()).prop_map(|(a, w, b)| format!("{a}{w}{b}"))
}

fn phrase(word: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    (word.clone(), select(&[" ", "  ", "\t"][..]), word).prop_map(|(a, s, b)| format!("{a}{s}{b}"))
}

fn glob() -> impl Strategy<Value = String> {
    (
        "[a-z0-9_:-]{0,4}",
        select(&["*", "?", "**"][..]),
        "[a-z0-9_-]{0,4}",
    )
        .prop_map(|(a, g, b)| format!("{a}{g}{b}"))
        .prop_filter("leading -", |g| !g.starts_with('-'))
}

/// Message globs may also be paths (`/api/*`).
fn message_glob() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => glob(),
        1 => ("[a-z]{1,3}", glob()).prop_map(|(dir, g)| format!("/{dir}/{g}")),
    ]
}

/// Patterns in normal form (as the parser stores them).
fn regex() -> impl Strategy<Value = Pred> {
    let patterns = &[
        "a.b",
        "[0-9]+ms",
        "(GET|POST) api/v[0-9]",
        r"x\.y\*",
        "[<]a[>]",
        "é+",
        "a b",
        r"\\",
        "a|()",
        "[^ \t]{2,5}",
        r"\@\#\~\&\x22",
    ][..];
    (select(patterns), any::<bool>()).prop_map(|(p, ci)| Pred::Regex {
        pattern: p.replace(r"\x22", "\\\""),
        case_insensitive: ci,
    })
}

fn op() -> impl Strategy<Value = CmpOp> {
    select(&[CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le][..])
}

fn keyword_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        select(
            &[
                Field::Namespace,
                Field::Pod,
                Field::Container,
                Field::Node,
                Field::Cluster,
                Field::Stream,
                Field::Workload,
            ][..]
        ),
        "[a-z0-9][a-z0-9./_-]{0,10}".prop_map(Field::Label),
    ]
}

fn message_term() -> impl Strategy<Value = Expr> {
    let pred = prop_oneof![
        message_word().prop_map(|value| Pred::Word { value }),
        phrase(message_word().boxed()).prop_map(|value| Pred::Phrase { value }),
        message_glob().prop_map(|pattern| Pred::Glob { pattern }),
        regex(),
        Just(Pred::Exists),
    ];
    pred.prop_map(|p| term(Field::Message, p))
}

fn keyword_term() -> impl Strategy<Value = Expr> {
    let bound = "[a-z0-9-]{1,6}";
    let pred = prop_oneof![
        any_word().prop_map(|value| Pred::Word { value }),
        phrase(any_word().boxed()).prop_map(|value| Pred::Phrase { value }),
        glob().prop_map(|pattern| Pred::Glob { pattern }),
        regex(),
        (op(), prop_oneof![any_word(), phrase(any_word().boxed())])
            .prop_map(|(op, value)| Pred::Compare { op, value }),
        (prop::option::of(bound), prop::option::of(bound))
            .prop_filter("one end at least", |(a, b)| a.is_some() || b.is_some())
            .prop_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
                ends => ends,
            })
            .prop_map(|(from, to)| Pred::Range { from, to }),
        Just(Pred::Exists),
    ];
    (keyword_field(), pred).prop_map(|(f, p)| term(f, p))
}

fn level_term() -> impl Strategy<Value = Expr> {
    let level = select(&LEVELS[..]).prop_map(str::to_owned);
    let pred = prop_oneof![
        level.clone().prop_map(|value| Pred::Word { value }),
        (op(), level.clone())
            .prop_filter("empty set", |(op, v)| {
                !matches!(
                    (op, v.as_str()),
                    (CmpOp::Gt, "fatal") | (CmpOp::Lt, "trace")
                )
            })
            .prop_map(|(op, value)| Pred::Compare { op, value }),
        (0..6usize, 0..6usize, 0..3u8).prop_map(|(a, b, open)| {
            let (a, b) = (a.min(b), a.max(b));
            let from = (open != 1).then(|| LEVELS[a].to_owned());
            let to = (open != 2).then(|| LEVELS[b].to_owned());
            Pred::Range { from, to }
        }),
        glob().prop_map(|pattern| Pred::Glob { pattern }),
        Just(Pred::Exists),
    ];
    pred.prop_map(|p| term(Field::Level, p))
}

fn time_term() -> impl Strategy<Value = Expr> {
    // 1970 .. 2100, with all kinds of fractions
    let ts = prop_oneof![
        (0i64..47_000).prop_map(|d| i128::from(d) * 86_400_000_000_000),
        (0i64..4_100_000_000).prop_map(|s| i128::from(s) * 1_000_000_000),
        0i128..4_100_000_000_000_000_000,
    ]
    .prop_map(|ns| format_timestamp(ns).unwrap());
    let pred = prop_oneof![
        (op(), ts.clone()).prop_map(|(op, value)| Pred::Compare { op, value }),
        (prop::option::of(ts.clone()), prop::option::of(ts))
            .prop_filter("one end at least", |(a, b)| a.is_some() || b.is_some())
            .prop_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
                ends => ends,
            })
            .prop_map(|(from, to)| Pred::Range { from, to }),
        Just(Pred::Exists),
    ];
    pred.prop_map(|p| term(Field::Time, p))
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        3 => message_term(),
        3 => keyword_term(),
        1 => level_term(),
        1 => time_term(),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| combine(v, true)),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| combine(v, false)),
            inner.prop_map(negate),
        ]
    })
}
