//! The evaluator: the reference semantics of the language.
#![allow(clippy::unwrap_used)]

use nevermore_lang::eval::{Doc, Matcher, compile_regex, highlight, matches};
use nevermore_lang::{
    CmpOp, Expr, Field, Limits, Pred, Span, Term, glob_to_regex, level_set, parse_strict,
    parse_timestamp,
};
use std::collections::HashMap;

#[derive(Default)]
struct Rec {
    ts: i64,
    message: String,
    fields: HashMap<Field, String>,
}

impl Doc for Rec {
    fn timestamp_ns(&self) -> i64 {
        self.ts
    }
    fn message(&self) -> &str {
        &self.message
    }
    fn field(&self, f: &Field) -> Option<&str> {
        self.fields.get(f).map(String::as_str)
    }
}

fn rec(message: &str, fields: &[(Field, &str)]) -> Rec {
    Rec {
        ts: i64::try_from(parse_timestamp("2026-11-26T10:00:00Z").unwrap()).unwrap(),
        message: message.into(),
        fields: fields
            .iter()
            .map(|(f, v)| (f.clone(), (*v).to_owned()))
            .collect(),
    }
}

fn q(text: &str) -> Expr {
    parse_strict(text, &Limits::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Asserts `query` matches exactly the records at the `true` positions.
fn check(query: &str, cases: &[(&Rec, bool)]) {
    let expr = q(query);
    let matcher = Matcher::new(&expr).unwrap();
    for (i, (r, want)) in cases.iter().enumerate() {
        assert_eq!(
            matches(&expr, *r),
            *want,
            "{query} on case {i} ({:?})",
            r.message
        );
        assert_eq!(matcher.matches(*r), *want, "{query} on case {i} (matcher)");
    }
}

#[test]
fn message_words_and_phrases_match_tokens() {
    let a = rec("Connection REFUSED by 10.0.0.1", &[]);
    let b = rec("GET /api/v1/users 200", &[]);
    let c = rec("api x v1 refused connection", &[]);
    check("refused", &[(&a, true), (&b, false), (&c, true)]);
    check("refuse", &[(&a, false), (&c, false)]);
    check("/api/v1", &[(&a, false), (&b, true), (&c, false)]);
    check("\"connection refused\"", &[(&a, true), (&c, false)]);
    check("10.0.0.1", &[(&a, true), (&b, false)]);
    check("connection refused", &[(&a, true), (&c, true)]);
    check(
        "connection -refused",
        &[(&a, false), (&b, false), (&c, false)],
    );
    check("users OR refused", &[(&a, true), (&b, true), (&c, true)]);
    check("", &[(&a, true), (&b, true)]);
}

#[test]
fn message_globs_and_regexes_match_anywhere() {
    let a = rec("xx CONNECTION refused yy", &[]);
    let b = rec("timeout\nafter 5s", &[]);
    check("conn*fused", &[(&a, true), (&b, false)]);
    check("CONN?CTION", &[(&a, true)]);
    check("/CONNECTION/", &[(&a, true), (&b, false)]);
    check("/connection/", &[(&a, false)]);
    check("/connection/i", &[(&a, true)]);
    // `.` crosses lines, as in Lucene
    check("/timeout.after/", &[(&b, true)]);
    check(r"/\d+s/", &[(&b, true), (&a, false)]);
}

#[test]
fn keyword_fields_match_whole_values() {
    let a = rec("", &[(Field::Pod, "api-1"), (Field::Namespace, "shop")]);
    let b = rec("", &[(Field::Pod, "xapi-12")]);
    let c = rec("", &[]);
    check("pod:api-1", &[(&a, true), (&b, false), (&c, false)]);
    check("pod:api", &[(&a, false)]);
    check("pod:api-*", &[(&a, true), (&b, false)]);
    check("pod:*api-*", &[(&a, true), (&b, true), (&c, false)]);
    check("pod:API-*", &[(&a, false)]);
    check("pod:/api-[0-9]/", &[(&a, true), (&b, false)]);
    check("pod:/API-[0-9]/i", &[(&a, true)]);
    check("pod:>=m", &[(&a, false), (&b, true), (&c, false)]);
    check("pod:a..b", &[(&a, true), (&b, false)]);
    check("pod:*..api-1", &[(&a, true), (&b, false)]);
    check("namespace:shop,prod pod:api-1", &[(&a, true), (&b, false)]);
    check("-namespace:shop", &[(&a, false), (&b, true), (&c, true)]);
}

#[test]
fn labels_and_presence() {
    let a = rec(
        "",
        &[
            (Field::Label("app.kubernetes.io/name".into()), "api"),
            (Field::Level, "info"),
        ],
    );
    let b = rec("", &[]);
    check(
        "label.app.kubernetes.io/name:api",
        &[(&a, true), (&b, false)],
    );
    check(
        "has:label.app.kubernetes.io/name",
        &[(&a, true), (&b, false)],
    );
    check(
        "no:label.app.kubernetes.io/name",
        &[(&a, false), (&b, true)],
    );
    check("has:level", &[(&a, true), (&b, false)]);
    check("has:message has:time", &[(&a, true), (&b, true)]);
}

#[test]
fn levels_compare_by_severity() {
    let info = rec("", &[(Field::Level, "info")]);
    let warn = rec("", &[(Field::Level, "warn")]);
    let fatal = rec("", &[(Field::Level, "fatal")]);
    let odd = rec("", &[(Field::Level, "WARN")]);
    let none = rec("", &[]);
    check(
        "level:>=warning",
        &[
            (&info, false),
            (&warn, true),
            (&fatal, true),
            (&odd, false),
            (&none, false),
        ],
    );
    check(
        "level:<warn",
        &[(&info, true), (&warn, false), (&none, false)],
    );
    check(
        "level:debug..warn",
        &[(&info, true), (&warn, true), (&fatal, false)],
    );
    check("level:err..*", &[(&warn, false), (&fatal, true)]);
    check("level:warn", &[(&warn, true), (&odd, false)]);
    check(
        "-level:>=warn",
        &[(&info, true), (&warn, false), (&none, true)],
    );
}

#[test]
fn time_compares_instants() {
    let at = |t: &str| Rec {
        ts: i64::try_from(parse_timestamp(t).unwrap()).unwrap(),
        ..Rec::default()
    };
    let before = at("2026-11-25T23:59:59.999999999Z");
    let start = at("2026-11-26T00:00:00Z");
    let later = at("2026-11-26T10:00:00+02:00");
    check(
        "time:>=2026-11-26",
        &[(&before, false), (&start, true), (&later, true)],
    );
    check("time:>2026-11-26", &[(&start, false), (&later, true)]);
    check(
        "time:<2026-11-26T08:00:00Z",
        &[(&start, true), (&later, false)],
    );
    check("time:<=2026-11-26T08:00:00Z", &[(&later, true)]);
    check(
        "time:2026-11-25T12:00:00Z..2026-11-26",
        &[(&before, true), (&start, true), (&later, false)],
    );
}

#[test]
fn highlight_finds_positive_message_terms() {
    let msg = "Connection refused at time 12:00, retry in 5s: connection refused";
    let expr = q("\"connection refused\" -retry /t.me/ namespace:x 5*");
    // `5*` is `5.*` anywhere in the line, like grep: to the end of the line
    assert_eq!(highlight(&expr, msg), vec![(0, 18), (22, 26), (43, 65)]);
    // overlapping matches merge
    assert_eq!(
        highlight(&q("/con+ect/ connection"), msg),
        vec![(0, 10), (47, 57)]
    );
    assert!(highlight(&q("-connection"), msg).is_empty());
    assert!(highlight(&Expr::All, msg).is_empty());
}

#[test]
fn hand_built_expressions_are_safe() {
    let term = |field, pred| {
        Expr::Term(Term {
            field,
            pred,
            span: Span { start: 0, end: 0 },
        })
    };
    // a word without tokens matches nothing, like a phrase query without terms
    let r = rec("--- ===", &[]);
    let e = term(
        Field::Message,
        Pred::Word {
            value: "---".into(),
        },
    );
    assert!(!matches(&e, &r));
    // a regex past the size limit: the matcher refuses it, `matches` treats it as no match
    let huge = Pred::Regex {
        pattern: "((((a{100}){100}){100}){100})".into(),
        case_insensitive: false,
    };
    let e = term(Field::Pod, huge);
    assert!(Matcher::new(&e).is_err());
    assert!(!matches(&e, &rec("", &[(Field::Pod, "a")])));
    let bad_time = term(
        Field::Time,
        Pred::Compare {
            op: CmpOp::Gt,
            value: "soon".into(),
        },
    );
    assert!(!matches(&bad_time, &r));
}

#[test]
fn helpers() {
    assert_eq!(glob_to_regex("a*b?.c"), r"a(?s:.*)b(?s:.)\.c");
    let re = compile_regex(&glob_to_regex("canary-*"), false, true).unwrap();
    assert!(re.is_match("canary-1\n2") && !re.is_match("x-canary-1"));
    let level = |op, v: &str| {
        level_set(&Pred::Compare {
            op,
            value: v.into(),
        })
    };
    assert_eq!(
        level(CmpOp::Ge, "warn").unwrap(),
        ["warn", "error", "fatal"]
    );
    assert_eq!(level(CmpOp::Lt, "info").unwrap(), ["trace", "debug"]);
    assert_eq!(level(CmpOp::Lt, "trace").unwrap(), Vec::<&str>::new());
    assert_eq!(level(CmpOp::Gt, "fatal").unwrap(), Vec::<&str>::new());
    assert_eq!(level(CmpOp::Le, "crit").unwrap().len(), 6);
    assert_eq!(level(CmpOp::Le, "loud"), None);
    let range = Pred::Range {
        from: Some("debug".into()),
        to: None,
    };
    assert_eq!(
        level_set(&range).unwrap(),
        ["debug", "info", "warn", "error", "fatal"]
    );
    assert_eq!(
        level_set(&Pred::Word {
            value: "err".into()
        })
        .unwrap(),
        ["error"]
    );
    assert_eq!(level_set(&Pred::Exists), None);
}
