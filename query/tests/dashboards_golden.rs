//! The Grafana export of every dashboard is a golden file (`testdata/dashboards/<name>.grafana.json`);
//! `UPDATE_GOLDEN=1 cargo test -p nevermore-query --test dashboards_golden` rewrites them.

use nevermore_query::metrics::dashboards;
use std::path::PathBuf;

#[test]
fn grafana_exports_match_their_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/dashboards");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for d in dashboards::all() {
        let path = dir.join(format!("{}.grafana.json", d.name));
        let text = serde_json::to_string_pretty(&d.grafana()).expect("json") + "\n";
        if update {
            std::fs::write(&path, &text).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            text,
            want,
            "{} differs from its golden file",
            path.display()
        );
    }
}
