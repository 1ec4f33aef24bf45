//! Golden tests of config diagnostics: every `testdata/config/*.yaml` is checked and the
//! output (as `nevermore check-config` prints it) compared with `*.diagnostics` next to it.
//! `UPDATE_GOLDEN=1 cargo test -p nevermore-collector --test config_golden` rewrites them.

#![allow(clippy::unwrap_used)]

use nevermore_collector::config::{HostEnv, load_str_with};
use std::path::PathBuf;

/// What `nevermore check-config FILE` prints for `text`.
fn check_output(text: &str, file_name: &str) -> String {
    // Fixed so that the output does not depend on the machine.
    let env = HostEnv {
        node_name: Some("golden-node".into()),
        hostname: None,
    };
    let mut out = String::new();
    match load_str_with(text, file_name, &env) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                out.push_str(&format!("{w}\n"));
            }
            out.push_str(&format!("{}\n", loaded.summary()));
        }
        Err(errors) => out.push_str(&format!("{errors}\n")),
    }
    out
}

#[test]
fn config_diagnostics_golden() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/config");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no config fixtures in {}", dir.display());
    let mut mismatches = Vec::new();
    for yaml in files {
        let name = yaml.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&yaml).unwrap();
        let got = check_output(&text, &name);
        let golden = yaml.with_extension("diagnostics");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_GOLDEN=1", golden.display()));
        if got != want {
            mismatches.push(format!("{name}:\n--- want\n{want}+++ got\n{got}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.join("\n")
    );
}
