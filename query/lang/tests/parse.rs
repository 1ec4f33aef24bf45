//! Parser and printer behaviour beyond the golden files: error display, spans, limits, normal
//! form, canonical printing.
#![allow(clippy::unwrap_used)]

use nevermore_lang::{Expr, Field, Limits, Pred, Span, parse_lenient, parse_strict, print};

fn strict(text: &str) -> Expr {
    parse_strict(text, &Limits::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn strict_errors_name_the_first_problem_with_its_byte_span() {
    let e = parse_strict("level:bogus \"x", &Limits::default()).unwrap_err();
    assert_eq!(e.code, "unknown_level");
    assert_eq!(e.span, Span { start: 0, end: 11 });
    let e = parse_strict("namespace:shop \"connection refused", &Limits::default()).unwrap_err();
    assert_eq!(e.to_string(), "15..34: unterminated quote");
    // the lexer's problem at 4 comes before the parser's at 6
    let e = parse_strict("a - ) b", &Limits::default()).unwrap_err();
    assert_eq!((e.code, e.span.start), ("dangling_negation", 2));
}

#[test]
fn regex_errors_point_into_the_query() {
    // `\/` is one character of the pattern but two of the query
    let p = parse_lenient(r"x /a\/b(c/", &Limits::default());
    assert_eq!(p.diagnostics.len(), 1, "{:?}", p.diagnostics);
    let d = &p.diagnostics[0];
    assert_eq!(d.code, "bad_regex");
    assert_eq!(&r"x /a\/b(c/"[d.span.start..d.span.end], "(");
    // the bad regex became free text
    assert_eq!(print(&p.expr), "x \"a/b(c\"");
}

#[test]
fn comma_list_spans() {
    let Expr::Or { args } = strict("namespace:prod,\"a b\",/x/") else {
        panic!("not an or")
    };
    let spans: Vec<Span> = args
        .iter()
        .map(|a| match a {
            Expr::Term(t) => t.span,
            _ => panic!("not a term"),
        })
        .collect();
    let at = |start, end| Span { start, end };
    assert_eq!(spans, [at(0, 14), at(15, 20), at(21, 24)]);
}

#[test]
fn limits_are_inclusive() {
    let limits = Limits {
        max_terms: 3,
        max_depth: 2,
        max_query_bytes: 20,
        ..Limits::default()
    };
    assert!(parse_strict("a b c", &limits).is_ok());
    assert_eq!(
        parse_strict("a b c d", &limits).unwrap_err().code,
        "too_many_terms"
    );
    assert_eq!(
        parse_strict("namespace:a,b,c,d", &limits).unwrap_err().code,
        "too_many_terms"
    );
    assert!(parse_strict("((a))", &limits).is_ok());
    assert_eq!(
        parse_strict("(((a)))", &limits).unwrap_err().code,
        "too_deep"
    );
    assert!(parse_strict(&"a".repeat(20), &limits).is_ok());
    let long = format!("{}é", "a".repeat(19));
    let e = parse_strict(&long, &limits).unwrap_err();
    assert_eq!((e.code, e.span.start), ("query_too_long", 19));
    // lenient: the prefix that fits, cut on a character boundary
    assert_eq!(print(&parse_lenient(&long, &limits).expr), "a".repeat(19));
}

#[test]
fn normal_form() {
    assert_eq!(strict(""), Expr::All);
    assert_eq!(strict(" \t\n"), Expr::All);
    assert!(matches!(strict("((a))"), Expr::Term(_)));
    let Expr::And { args } = strict("a (b (c d)) AND e") else {
        panic!()
    };
    assert_eq!(args.len(), 5);
    let Expr::Or { args } = strict("a OR (b OR c) OR namespace:x,y") else {
        panic!()
    };
    assert_eq!(args.len(), 5);
    assert!(matches!(strict("--a"), Expr::Term(_)));
    assert!(matches!(strict("NOT -(a)"), Expr::Term(_)));
    assert!(matches!(strict("NOT NOT NOT a"), Expr::Not { .. }));
    let Expr::Term(t) = strict("\"one\"") else {
        panic!()
    };
    assert_eq!(
        t.pred,
        Pred::Word {
            value: "one".into()
        }
    );
    assert_eq!(
        strict("-has:pod").erase_spans(),
        strict("no:pod").erase_spans()
    );
    assert_eq!(
        strict("-no:pod").erase_spans(),
        strict("has:pod").erase_spans()
    );
}

#[test]
fn values() {
    let term = |text: &str| match strict(text) {
        Expr::Term(t) => (t.field, t.pred),
        e => panic!("{text}: {e:?}"),
    };
    assert_eq!(
        term("time:>2026-11-26T10:00:00.5-01:30"),
        (
            Field::Time,
            Pred::Compare {
                op: nevermore_lang::CmpOp::Gt,
                value: "2026-11-26T11:30:00.500000000Z".into()
            }
        )
    );
    assert_eq!(
        term("level:CRITICAL").1,
        Pred::Word {
            value: "fatal".into()
        }
    );
    assert_eq!(
        term("level:\"warning\"").1,
        Pred::Word {
            value: "warn".into()
        }
    );
    assert_eq!(
        term("label.Team:a").0,
        Field::Label("Team".into()),
        "label keys keep their case"
    );
    assert_eq!(
        term("pod:a?c").1,
        Pred::Glob {
            pattern: "a?c".into()
        }
    );
    assert_eq!(
        term("pod:\"a?c\"").1,
        Pred::Word {
            value: "a?c".into()
        }
    );
    assert_eq!(
        parse_strict("namespace:a..", &Limits::default())
            .unwrap_err()
            .code,
        "bad_range"
    );
}

#[test]
fn canonical_printing() {
    let cases = [
        (
            "namespace:shop -pod:canary-* level:>=warn \"connection refused\"",
            None,
        ),
        (
            "NOT namespace:a AND (b OR c)",
            Some("-namespace:a (b OR c)"),
        ),
        ("(namespace:a OR namespace:b) x", Some("namespace:a,b x")),
        ("level:warning,ERR", Some("level:warn,error")),
        (
            "time:2026-11-26T00:00:00.000Z..2026-11-27T10:00:00+00:00",
            Some("time:2026-11-26..2026-11-27T10:00:00Z"),
        ),
        (
            "\"namespace:x\" \"-x\" \"AND\" \"a*\" \"/a/\" /a\\/b/i",
            None,
        ),
        (
            "pod:\"a,b\" pod:\"/x\" pod:\">x\" pod:\"a..b\" pod:-x",
            Some("pod:\"a,b\" pod:\"/x\" pod:\">x\" pod:\"a..b\" pod:-x"),
        ),
        (
            "message:namespace:* message:x",
            Some("message:namespace:* x"),
        ),
        ("a OR b c", None),
        ("-(a b) -(a OR b) -namespace:a,b", None),
        ("has:label.app no:node", None),
        ("pod:>=\"=x\" pod:<\"a b\"", None),
        (
            "msg=\"connection refused\"",
            Some("msg= \"connection refused\""),
        ),
    ];
    for (input, want) in cases {
        let printed = print(&strict(input));
        assert_eq!(printed, want.unwrap_or(input), "{input}");
    }
}
