//! Shared by the tests that need the Elasticsearch-API servers: finding them
//! (`NEVERMORE_ES_URLS`; a test fails, never skips, without them), loading the fixture set into a
//! fresh index made from the index template, and the fixture itself.

#![allow(dead_code)]

pub mod metric_servers;

use nevermore_query::logs::elasticsearch::{EsBackend, EsTimeouts};
use nevermore_query::logs::{SortKey, TimeRange};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------------------------
// Servers and fixtures

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Elasticsearch,
    OpenSearch,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub flavour: Flavour,
}

pub async fn servers() -> Vec<Server> {
    let urls = std::env::var("NEVERMORE_ES_URLS").unwrap_or_default();
    assert!(
        !urls.trim().is_empty(),
        "NEVERMORE_ES_URLS is not set: run `.ci/services start` and source the env file it writes \
         (default /tmp/nevermore-services/env)"
    );
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let root: Value = match client.get(format!("{url}/")).send().await {
            Ok(resp) => resp.json().await.expect("GET / answers json"),
            Err(e) => {
                panic!("elasticsearch server {url} from NEVERMORE_ES_URLS is unreachable: {e}")
            }
        };
        let flavour = if root
            .pointer("/version/distribution")
            .and_then(Value::as_str)
            == Some("opensearch")
        {
            Flavour::OpenSearch
        } else {
            Flavour::Elasticsearch
        };
        out.push(Server {
            url: url.to_string(),
            flavour,
        });
    }
    out
}

pub fn template(flavour: Flavour) -> Value {
    let text = match flavour {
        Flavour::Elasticsearch => nevermore_schemas::ES_INDEX_TEMPLATE,
        Flavour::OpenSearch => nevermore_schemas::OPENSEARCH_INDEX_TEMPLATE,
    };
    serde_json::from_str(text).expect("template is json")
}

pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The fixture records, sorted by key, ascending.
pub fn fixture() -> Vec<(SortKey, Value)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/search/records.ndjson"
    );
    let text = std::fs::read_to_string(path).expect("read testdata/search/records.ndjson");
    let mut out: Vec<(SortKey, Value)> = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("fixture line is json");
            (key_of(&v), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn key_of(v: &Value) -> SortKey {
    SortKey {
        ts_ns: nevermore_index::parse_ts(v["@timestamp"].as_str().expect("timestamp"))
            .expect("rfc 3339"),
        stream_id: v["event"]["stream_id"]
            .as_str()
            .expect("stream id")
            .to_string(),
        seq: v["event"]["sequence"].as_u64().expect("sequence"),
    }
}

pub struct Loaded {
    pub server: Server,
    pub index: String,
    pub backend: EsBackend,
    pub records: Vec<(SortKey, Value)>,
}

impl Loaded {
    pub fn full_range(&self) -> TimeRange {
        TimeRange {
            start_ns: self.records[0].0.ts_ns,
            end_ns: self.records[self.records.len() - 1].0.ts_ns + 1,
        }
    }
}

/// A fresh index with the template's settings and mappings, holding the whole fixture.
pub async fn load(server: &Server) -> Loaded {
    let client = reqwest::Client::new();
    // Not `logs-nevermore*`: no installed template may add to the mapping under test.
    let index = unique_name("nvtest-es");
    let body = template(server.flavour)["template"].clone();
    let resp = client
        .put(format!("{}/{index}", server.url))
        .json(&body)
        .send()
        .await
        .expect("create index");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{}: create {index}: {status} {text}",
        server.url
    );
    let records = fixture();
    for chunk in records.chunks(500) {
        let mut bulk = String::new();
        for (_, r) in chunk {
            let action = json!({"create": {"_index": index, "_id": r["event"]["id"]}});
            bulk.push_str(&format!("{action}\n{r}\n"));
        }
        let resp: Value = client
            .post(format!("{}/_bulk?refresh=wait_for", server.url))
            .header("content-type", "application/x-ndjson")
            .body(bulk)
            .send()
            .await
            .expect("bulk")
            .json()
            .await
            .expect("bulk answer");
        assert_eq!(
            resp["errors"],
            json!(false),
            "{}: bulk errors: {resp}",
            server.url
        );
    }
    let backend = EsBackend::new(
        vec![server.url.clone()],
        index.clone(),
        None,
        EsTimeouts::default(),
    )
    .expect("backend");
    Loaded {
        server: server.clone(),
        index,
        backend,
        records,
    }
}

pub async fn drop_index(l: &Loaded) {
    let _ = reqwest::Client::new()
        .delete(format!("{}/{}", l.server.url, l.index))
        .send()
        .await;
}

/// osmem-server's `flat_object` keeps only one of `app` and `app.kubernetes.io/name` when a
/// record has both (which one varies from record to record), where OpenSearch keeps both: label
/// queries cannot be checked on such records there.
pub fn osmem_label_collision(r: &Value) -> bool {
    let Some(labels) = r.pointer("/kubernetes/labels").and_then(Value::as_object) else {
        return false;
    };
    labels.keys().any(|a| {
        labels.keys().any(|b| {
            b.len() > a.len() && b.starts_with(a.as_str()) && b[a.len()..].starts_with('.')
        })
    })
}

/// RFC 3339 UTC with nine fraction digits.
pub fn rfc3339(ns: i64) -> String {
    nevermore_index::format_ts(ns)
}
