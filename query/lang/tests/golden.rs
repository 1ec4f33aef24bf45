//! Golden files of the language, the reviewed spec:
//! - `testdata/query/ok/*.q` → `*.ast.json` (the AST) and `*.es.json` (`es::to_dsl`);
//! - `testdata/query/err/*.q` → `*.diagnostics` (each lenient diagnostic as
//!   `start..end code: message`, then the understood query as `print` writes it).
//!
//! `UPDATE_GOLDEN=1 cargo test -p nevermore-lang --test golden` rewrites them.
#![allow(clippy::unwrap_used)]

use nevermore_lang::{Limits, es, parse_lenient, parse_strict, print};
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/query")
}

/// The query of a `.q` file: its text without the final newline.
fn query(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "q"))
        .collect();
    files.sort();
    files
}

/// Compares `actual` with the golden file at `path` (or rewrites it); a difference is pushed.
fn check(path: PathBuf, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "--- {}\nexpected:\n{expected}\nactual:\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn ok_queries() {
    let limits = Limits::default();
    let files = cases("ok");
    assert!(files.len() >= 40, "only {} ok cases", files.len());
    let mut failures = Vec::new();
    for q in files {
        let text = query(&q);
        let expr = parse_strict(&text, &limits)
            .unwrap_or_else(|e| panic!("{}: {e} ({})", q.display(), e.code));
        // the canonical text reads back as the same query
        let again = parse_strict(&print(&expr), &limits).unwrap();
        assert_eq!(again.erase_spans(), expr.erase_spans(), "{}", q.display());
        let ast = serde_json::to_string_pretty(&expr).unwrap() + "\n";
        check(q.with_extension("ast.json"), &ast, &mut failures);
        let dsl = serde_json::to_string_pretty(&es::to_dsl(&expr)).unwrap() + "\n";
        check(q.with_extension("es.json"), &dsl, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (UPDATE_GOLDEN=1 to accept):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn err_queries() {
    let limits = Limits {
        // small enough for readable golden files
        max_query_bytes: 512,
        max_terms: 8,
        max_depth: 4,
        ..Limits::default()
    };
    let files = cases("err");
    assert!(files.len() >= 20, "only {} err cases", files.len());
    let mut failures = Vec::new();
    for q in files {
        let text = query(&q);
        let parsed = parse_lenient(&text, &limits);
        assert!(
            !parsed.diagnostics.is_empty(),
            "{}: no diagnostic",
            q.display()
        );
        let strict = parse_strict(&text, &limits).unwrap_err();
        let first = parsed
            .diagnostics
            .iter()
            .map(|d| d.span.start)
            .min()
            .unwrap();
        assert!(strict.span.start == first || strict.code == "query_too_long");
        let mut out = String::new();
        for d in &parsed.diagnostics {
            writeln!(out, "{d}").unwrap();
        }
        writeln!(out, "understood: {}", print(&parsed.expr)).unwrap();
        check(q.with_extension("diagnostics"), &out, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (UPDATE_GOLDEN=1 to accept):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
