//! The `nevermore` binary, run as users run it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn nevermore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nevermore"))
        .args(args)
        .current_dir(config_dir())
        .env_remove("NEVERMORE_CONFIG")
        .output()
        .unwrap()
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/config")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version() {
    let o = nevermore(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("nevermore {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_mentions_every_subcommand() {
    let o = nevermore(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for cmd in ["collect", "check-config", "relay", "serve", "up", "search"] {
        assert!(out.contains(cmd), "--help does not mention {cmd}:\n{out}");
    }
}

#[test]
fn check_config_good_file() {
    let o = nevermore(&["check-config", "full.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "config ok: 3 sources, 2 sinks\n");
}

#[test]
fn check_config_bad_file_prints_every_problem() {
    let o = nevermore(&["check-config", "many-problems.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let want = std::fs::read_to_string(config_dir().join("many-problems.diagnostics")).unwrap();
    assert_eq!(stdout(&o), want);
}

#[test]
fn check_config_missing_file() {
    let o = nevermore(&["check-config", "does-not-exist.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("does-not-exist.yaml: error: cannot read the config file"));
}

#[test]
fn collect_with_bad_config_exits_1() {
    let o = nevermore(&["collect", "--config", "bad-keys.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad-keys.yaml:2:1: error: clustr"));
}

#[test]
fn serve_is_not_yet_available() {
    let o = nevermore(&["serve"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "nevermore serve: not yet available in this build"
    );
    let o = nevermore(&["search", "level:error"]);
    assert_eq!(o.status.code(), Some(2));
}
