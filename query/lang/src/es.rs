//! Lowering of a query to Elasticsearch 8 query DSL.
//!
//! Only these query types are emitted: `bool`, `term`, `terms`, `match`, `match_phrase`,
//! `wildcard`, `regexp`, `range`, `exists`, `match_all`. Never `query_string` or scripts: a user's
//! query can only ask for what the AST can say.
//!
//! The mapping it targets is `schemas/elasticsearch/index-template.json`: keyword fields, the
//! `message` text field (tokenized like [`crate::message_terms`]) and its `message.grep` keyword
//! subfield, which glob and regex on the message search anywhere in the line.
//!
//! Everything is a filter (no scoring): results are sorted by time, never by relevance.

use crate::ast::{CmpOp, Expr, Field, Pred, Term};
use crate::eval::level_set;
use crate::message_terms;
use crate::parser::time::{format_timestamp, parse_timestamp};
use serde_json::{Value, json};

/// The message subfield that holds the whole line, for glob and regex.
pub const MESSAGE_GREP_FIELD: &str = "message.grep";

/// The Elasticsearch query of `expr`.
pub fn to_dsl(expr: &Expr) -> Value {
    match expr {
        Expr::All => json!({"match_all": {}}),
        Expr::And { args } => {
            let mut filter = Vec::new();
            let mut must_not = Vec::new();
            for arg in args {
                match arg {
                    Expr::Not { arg } => must_not.push(to_dsl(arg)),
                    other => filter.push(to_dsl(other)),
                }
            }
            let mut bool_query = serde_json::Map::new();
            if !filter.is_empty() {
                bool_query.insert("filter".into(), Value::Array(filter));
            }
            if !must_not.is_empty() {
                bool_query.insert("must_not".into(), Value::Array(must_not));
            }
            json!({"bool": bool_query})
        }
        Expr::Or { args } => json!({"bool": {
            "should": args.iter().map(to_dsl).collect::<Vec<_>>(),
            "minimum_should_match": 1,
        }}),
        Expr::Not { arg } => json!({"bool": {"must_not": [to_dsl(arg)]}}),
        Expr::Term(term) => term_dsl(term),
    }
}

/// Matches no document (a word with no token can match nothing in the index).
fn match_none() -> Value {
    json!({"bool": {"must_not": [{"match_all": {}}]}})
}

fn term_dsl(term: &Term) -> Value {
    let path = term.field.path();
    match (&term.field, &term.pred) {
        (_, Pred::Exists) => json!({"exists": {"field": path}}),
        (Field::Message, pred) => message_dsl(pred),
        // Levels by severity, as the evaluator reads them (`warning` is `warn`, ...).
        (Field::Level, Pred::Word { .. } | Pred::Compare { .. } | Pred::Range { .. })
            if level_set(&term.pred).is_some() =>
        {
            json!({"terms": {path: level_set(&term.pred).unwrap_or_default()}})
        }
        (
            Field::Time,
            Pred::Word { .. } | Pred::Phrase { .. } | Pred::Compare { .. } | Pred::Range { .. },
        ) => time_dsl(&term.pred),
        (_, Pred::Word { value } | Pred::Phrase { value }) => json!({"term": {path: value}}),
        (_, Pred::Glob { pattern }) if !pattern.contains('\\') => {
            json!({"wildcard": {path: {"value": pattern}}})
        }
        // See the message glob: noida-db ignores `\` escapes in wildcard queries.
        (_, Pred::Glob { pattern }) => regexp(&path, &glob_to_regexp(pattern), false),
        (
            _,
            Pred::Regex {
                pattern,
                case_insensitive,
            },
        ) => regexp(&path, pattern, *case_insensitive),
        (_, Pred::Compare { op, value }) => json!({"range": {path: {range_op(*op): value}}}),
        (_, Pred::Range { from, to }) => {
            let mut bounds = serde_json::Map::new();
            if let Some(from) = from {
                bounds.insert("gte".into(), json!(from));
            }
            if let Some(to) = to {
                bounds.insert("lte".into(), json!(to));
            }
            if bounds.is_empty() {
                // `*..*`: any value at all.
                json!({"exists": {"field": path}})
            } else {
                json!({"range": {path: bounds}})
            }
        }
    }
}

fn message_dsl(pred: &Pred) -> Value {
    match pred {
        Pred::Word { value } => {
            let tokens = message_terms(value);
            match tokens.as_slice() {
                [] => match_none(),
                [one] => json!({"match": {"message": {"query": one}}}),
                _ => json!({"match_phrase": {"message": {"query": tokens.join(" ")}}}),
            }
        }
        Pred::Phrase { value } => {
            let tokens = message_terms(value);
            if tokens.is_empty() {
                match_none()
            } else {
                json!({"match_phrase": {"message": {"query": tokens.join(" ")}}})
            }
        }
        // grep-like: anywhere in the line, ignoring case.
        Pred::Glob { pattern } if !pattern.contains('\\') => {
            json!({"wildcard": {MESSAGE_GREP_FIELD: {
                "value": format!("*{pattern}*"),
                "case_insensitive": true,
            }}})
        }
        // A literal backslash: as a regexp, because noida-db's wildcard query ignores `\`
        // escapes (Elasticsearch and OpenSearch honour them).
        Pred::Glob { pattern } => regexp(
            MESSAGE_GREP_FIELD,
            &format!("{ANY}{}{ANY}", glob_to_regexp(pattern)),
            true,
        ),
        // Lucene regexps are anchored at both ends: the pattern is wrapped to match anywhere.
        Pred::Regex {
            pattern,
            case_insensitive,
        } => regexp(
            MESSAGE_GREP_FIELD,
            &format!("{ANY}({pattern}){ANY}"),
            *case_insensitive,
        ),
        // The parser never builds comparisons on the message; compare the whole line if it did.
        Pred::Compare { op, value } => {
            json!({"range": {MESSAGE_GREP_FIELD: {range_op(*op): value}}})
        }
        Pred::Range { from, to } => {
            let mut bounds = serde_json::Map::new();
            if let Some(from) = from {
                bounds.insert("gte".into(), json!(from));
            }
            if let Some(to) = to {
                bounds.insert("lte".into(), json!(to));
            }
            json!({"range": {MESSAGE_GREP_FIELD: bounds}})
        }
        Pred::Exists => json!({"exists": {"field": "message"}}),
    }
}

/// Any run of characters, newlines included. In Lucene `.` already matches a newline, so this is
/// `.*`; spelled out because noida-db's `.` does not, and multiline records must match anywhere.
const ANY: &str = "(.|\n)*";

/// A glob as a Lucene regexp (with `flags: NONE`): `*` and `?` become `(.|\n)*` and `(.|\n)`,
/// every other character is escaped.
fn glob_to_regexp(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 2);
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(ANY),
            '?' => out.push_str("(.|\n)"),
            c if c.is_alphanumeric() => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out
}

/// `flags: NONE`: the Lucene extensions (`&`, `~`, `<>`, `@`, `#`) stay literal characters, as
/// in Rust's regex syntax.
fn regexp(path: &str, pattern: &str, case_insensitive: bool) -> Value {
    let mut spec = json!({"value": pattern, "flags": "NONE"});
    if case_insensitive {
        spec["case_insensitive"] = json!(true);
    }
    json!({"regexp": {path: spec}})
}

const fn range_op(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Gt => "gt",
        CmpOp::Ge => "gte",
        CmpOp::Lt => "lt",
        CmpOp::Le => "lte",
    }
}

/// `time:` as inclusive nanosecond bounds on `@timestamp`, like the evaluator: `>t` is `>= t+1ns`.
/// Bounds go out normalised (RFC 3339, nine fraction digits). A value that is no timestamp
/// matches nothing.
fn time_dsl(pred: &Pred) -> Value {
    let ns = |v: &str| parse_timestamp(v);
    let bounds = match pred {
        Pred::Word { value } | Pred::Phrase { value } => ns(value).map(|v| (Some(v), Some(v))),
        Pred::Compare { op, value } => ns(value).map(|v| match op {
            CmpOp::Gt => (Some(v + 1), None),
            CmpOp::Ge => (Some(v), None),
            CmpOp::Lt => (None, Some(v - 1)),
            CmpOp::Le => (None, Some(v)),
        }),
        Pred::Range { from, to } => {
            let lo = match from {
                Some(f) => ns(f).map(Some),
                None => Some(None),
            };
            let hi = match to {
                Some(t) => ns(t).map(Some),
                None => Some(None),
            };
            lo.zip(hi)
        }
        _ => None,
    };
    let Some((lo, hi)) = bounds else {
        return match_none();
    };
    let mut range = serde_json::Map::new();
    if let Some(lo) = lo.and_then(format_timestamp) {
        range.insert("gte".into(), json!(lo));
    }
    if let Some(hi) = hi.and_then(format_timestamp) {
        range.insert("lte".into(), json!(hi));
    }
    if range.is_empty() {
        return json!({"match_all": {}});
    }
    json!({"range": {"@timestamp": range}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Span;

    fn term(field: Field, pred: Pred) -> Expr {
        Expr::Term(Term {
            field,
            pred,
            span: Span { start: 0, end: 0 },
        })
    }
    fn word(field: Field, value: &str) -> Expr {
        term(
            field,
            Pred::Word {
                value: value.into(),
            },
        )
    }

    #[test]
    fn empty_query_is_match_all() {
        assert_eq!(to_dsl(&Expr::All), json!({"match_all": {}}));
    }

    #[test]
    fn keyword_word_is_term() {
        assert_eq!(
            to_dsl(&word(Field::Namespace, "shop")),
            json!({"term": {"kubernetes.namespace": "shop"}})
        );
        assert_eq!(
            to_dsl(&term(
                Field::Pod,
                Pred::Phrase {
                    value: "api 1".into()
                }
            )),
            json!({"term": {"kubernetes.pod.name": "api 1"}})
        );
        assert_eq!(
            to_dsl(&word(Field::Label("app.kubernetes.io/name".into()), "api")),
            json!({"term": {"kubernetes.labels.app.kubernetes.io/name": "api"}})
        );
    }

    #[test]
    fn message_word_of_one_token_is_match() {
        assert_eq!(
            to_dsl(&word(Field::Message, "Refused")),
            json!({"match": {"message": {"query": "refused"}}})
        );
    }

    #[test]
    fn message_word_of_many_tokens_is_phrase() {
        assert_eq!(
            to_dsl(&word(Field::Message, "/api/v1")),
            json!({"match_phrase": {"message": {"query": "api v1"}}})
        );
        assert_eq!(
            to_dsl(&term(
                Field::Message,
                Pred::Phrase {
                    value: "Connection REFUSED".into()
                }
            )),
            json!({"match_phrase": {"message": {"query": "connection refused"}}})
        );
    }

    #[test]
    fn message_without_tokens_matches_nothing() {
        let none = json!({"bool": {"must_not": [{"match_all": {}}]}});
        assert_eq!(to_dsl(&word(Field::Message, "->")), none);
        assert_eq!(
            to_dsl(&term(Field::Message, Pred::Phrase { value: " ".into() })),
            none
        );
    }

    #[test]
    fn message_glob_is_case_insensitive_anywhere() {
        let glob = |p: &str| to_dsl(&term(Field::Message, Pred::Glob { pattern: p.into() }));
        assert_eq!(
            glob("time*out?"),
            json!({"wildcard": {"message.grep": {"value": "*time*out?*", "case_insensitive": true}}})
        );
        // A backslash: the same glob as a regexp.
        assert_eq!(
            glob(r"a\b*c."),
            json!({"regexp": {"message.grep": {
                "value": "(.|\n)*a\\\\b(.|\n)*c\\.(.|\n)*",
                "flags": "NONE",
                "case_insensitive": true,
            }}})
        );
    }

    #[test]
    fn message_regex_is_unanchored() {
        assert_eq!(
            to_dsl(&term(
                Field::Message,
                Pred::Regex {
                    pattern: "a|b".into(),
                    case_insensitive: true
                }
            )),
            json!({"regexp": {"message.grep": {
                "value": "(.|\n)*(a|b)(.|\n)*", "flags": "NONE", "case_insensitive": true}}})
        );
    }

    #[test]
    fn keyword_glob_and_regex_match_the_whole_value() {
        assert_eq!(
            to_dsl(&term(
                Field::Pod,
                Pred::Glob {
                    pattern: "api-*".into()
                }
            )),
            json!({"wildcard": {"kubernetes.pod.name": {"value": "api-*"}}})
        );
        assert_eq!(
            to_dsl(&term(
                Field::Pod,
                Pred::Glob {
                    pattern: r"a\?".into()
                }
            )),
            json!({"regexp": {"kubernetes.pod.name": {"value": "a\\\\(.|\n)", "flags": "NONE"}}})
        );
        assert_eq!(
            to_dsl(&term(
                Field::Container,
                Pred::Regex {
                    pattern: "db-[0-9]+".into(),
                    case_insensitive: false
                }
            )),
            json!({"regexp": {"kubernetes.container.name": {"value": "db-[0-9]+", "flags": "NONE"}}})
        );
    }

    #[test]
    fn level_comparisons_are_sets_in_severity_order() {
        let cmp = |op, v: &str| {
            term(
                Field::Level,
                Pred::Compare {
                    op,
                    value: v.into(),
                },
            )
        };
        assert_eq!(
            to_dsl(&cmp(CmpOp::Ge, "warn")),
            json!({"terms": {"log.level": ["warn", "error", "fatal"]}})
        );
        assert_eq!(
            to_dsl(&cmp(CmpOp::Lt, "info")),
            json!({"terms": {"log.level": ["trace", "debug"]}})
        );
        assert_eq!(
            to_dsl(&cmp(CmpOp::Gt, "fatal")),
            json!({"terms": {"log.level": []}})
        );
        assert_eq!(
            to_dsl(&cmp(CmpOp::Ge, "WARNING")),
            json!({"terms": {"log.level": ["warn", "error", "fatal"]}})
        );
        // Not a level: compared as a string, as the evaluator does.
        assert_eq!(
            to_dsl(&cmp(CmpOp::Le, "nope")),
            json!({"range": {"log.level": {"lte": "nope"}}})
        );
        let range = term(
            Field::Level,
            Pred::Range {
                from: Some("debug".into()),
                to: Some("warn".into()),
            },
        );
        assert_eq!(
            to_dsl(&range),
            json!({"terms": {"log.level": ["debug", "info", "warn"]}})
        );
        let open = term(
            Field::Level,
            Pred::Range {
                from: None,
                to: Some("debug".into()),
            },
        );
        assert_eq!(
            to_dsl(&open),
            json!({"terms": {"log.level": ["trace", "debug"]}})
        );
        assert_eq!(
            to_dsl(&word(Field::Level, "err")),
            json!({"terms": {"log.level": ["error"]}})
        );
        assert_eq!(
            to_dsl(&word(Field::Level, "verbose")),
            json!({"term": {"log.level": "verbose"}})
        );
    }

    #[test]
    fn time_is_a_range_on_timestamp() {
        let t = "2026-11-26T10:00:00.5Z";
        assert_eq!(
            to_dsl(&term(
                Field::Time,
                Pred::Compare {
                    op: CmpOp::Lt,
                    value: t.into()
                }
            )),
            json!({"range": {"@timestamp": {"lte": "2026-11-26T10:00:00.499999999Z"}}})
        );
        assert_eq!(
            to_dsl(&term(
                Field::Time,
                Pred::Range {
                    from: Some(t.into()),
                    to: None
                }
            )),
            json!({"range": {"@timestamp": {"gte": "2026-11-26T10:00:00.500000000Z"}}})
        );
        assert_eq!(
            to_dsl(&word(Field::Time, t)),
            json!({"range": {"@timestamp": {
                "gte": "2026-11-26T10:00:00.500000000Z",
                "lte": "2026-11-26T10:00:00.500000000Z",
            }}})
        );
        let gt = term(
            Field::Time,
            Pred::Compare {
                op: CmpOp::Gt,
                value: t.into(),
            },
        );
        assert_eq!(
            to_dsl(&gt),
            json!({"range": {"@timestamp": {"gte": "2026-11-26T10:00:00.500000001Z"}}})
        );
        let bad = term(
            Field::Time,
            Pred::Compare {
                op: CmpOp::Gt,
                value: "soon".into(),
            },
        );
        assert_eq!(to_dsl(&bad), match_none());
    }

    #[test]
    fn keyword_ranges_are_lexicographic() {
        assert_eq!(
            to_dsl(&term(
                Field::Namespace,
                Pred::Range {
                    from: Some("a".into()),
                    to: Some("m".into())
                }
            )),
            json!({"range": {"kubernetes.namespace": {"gte": "a", "lte": "m"}}})
        );
        assert_eq!(
            to_dsl(&term(
                Field::Node,
                Pred::Range {
                    from: None,
                    to: None
                }
            )),
            json!({"exists": {"field": "host.name"}})
        );
    }

    #[test]
    fn exists_and_missing() {
        let has = term(Field::Workload, Pred::Exists);
        assert_eq!(
            to_dsl(&has),
            json!({"exists": {"field": "kubernetes.workload.name"}})
        );
        let no = Expr::Not {
            arg: Box::new(term(Field::Level, Pred::Exists)),
        };
        assert_eq!(
            to_dsl(&no),
            json!({"bool": {"must_not": [{"exists": {"field": "log.level"}}]}})
        );
    }

    #[test]
    fn boolean_structure() {
        let e = Expr::And {
            args: vec![
                word(Field::Namespace, "shop"),
                Expr::Not {
                    arg: Box::new(word(Field::Pod, "canary")),
                },
                Expr::Or {
                    args: vec![word(Field::Stream, "stderr"), word(Field::Message, "error")],
                },
            ],
        };
        assert_eq!(
            to_dsl(&e),
            json!({"bool": {
                "filter": [
                    {"term": {"kubernetes.namespace": "shop"}},
                    {"bool": {"should": [
                        {"term": {"stream": "stderr"}},
                        {"match": {"message": {"query": "error"}}}
                    ], "minimum_should_match": 1}}
                ],
                "must_not": [{"term": {"kubernetes.pod.name": "canary"}}]
            }})
        );
        let only_not = Expr::And {
            args: vec![Expr::Not {
                arg: Box::new(word(Field::Pod, "x")),
            }],
        };
        assert_eq!(
            to_dsl(&only_not),
            json!({"bool": {"must_not": [{"term": {"kubernetes.pod.name": "x"}}]}})
        );
    }

    #[test]
    fn never_emits_query_string_or_script() {
        let e = Expr::Or {
            args: vec![
                term(
                    Field::Message,
                    Pred::Regex {
                        pattern: "x".into(),
                        case_insensitive: false,
                    },
                ),
                term(
                    Field::Message,
                    Pred::Glob {
                        pattern: "*".into(),
                    },
                ),
                term(
                    Field::Time,
                    Pred::Compare {
                        op: CmpOp::Gt,
                        value: "1".into(),
                    },
                ),
            ],
        };
        let text = to_dsl(&e).to_string();
        assert!(
            !text.contains("query_string") && !text.contains("script"),
            "{text}"
        );
    }
}
