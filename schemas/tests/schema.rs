//! Keeps `log-record.schema.json` in step with the Rust type. `UPDATE_GOLDEN=1 cargo test`
//! rewrites it.

use nevermore_schemas::LogRecord;
use std::path::Path;

#[test]
fn json_schema_file_matches_the_type() {
    let schema = schemars::schema_for!(LogRecord);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serialises");
    text.push('\n');
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("log-record.schema.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} is out of date: run UPDATE_GOLDEN=1 cargo test -p nevermore-schemas",
        path.display()
    );
}

#[test]
fn design_example_record_parses() {
    let example = r#"{"@timestamp": "2026-11-26T10:00:00.123456789Z", "message": "GET /health 200", "stream": "stdout",
 "log": {"level": "info", "file": {"path": "/var/log/pods/shop_api-7d9f_5c1e/api/0.log"}, "offset": 4096},
 "kubernetes": {"namespace": "shop", "pod": {"name": "api-7d9f", "uid": "5c1e"},
                "container": {"name": "api", "restart_count": 0}, "node": {"name": "node-a"},
                "labels": {"app": "api"}},
 "orchestrator": {"cluster": {"name": "prod-eu"}},
 "host": {"name": "node-a"},
 "event": {"id": "0123456789abcdef", "stream_id": "fedcba9876543210", "sequence": 1234, "dataset": "container"}}"#;
    let rec: LogRecord = serde_json::from_str(example).expect("example parses");
    let back: LogRecord =
        serde_json::from_str(&serde_json::to_string(&rec).expect("ser")).expect("reparse");
    assert_eq!(rec, back);
}
