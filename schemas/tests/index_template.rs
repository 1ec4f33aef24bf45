//! The Elasticsearch index templates map every field of the record, and the OpenSearch twin
//! differs only where OpenSearch lacks a feature.

use nevermore_schemas::{ES_INDEX_TEMPLATE, OPENSEARCH_INDEX_TEMPLATE};
use serde_json::{Value, json};

fn full_record() -> Value {
    json!({
        "@timestamp": "2026-11-26T10:00:00.123456789Z", "message": "GET /health 200",
        "stream": "stdout",
        "log": {"level": "info", "file": {"path": "/var/log/pods/x/api/0.log"}, "offset": 4096,
                "flags": ["partial"]},
        "kubernetes": {"namespace": "shop", "pod": {"name": "api-7d9f", "uid": "5c1e"},
                       "container": {"name": "api", "restart_count": 0},
                       "node": {"name": "node-a"}, "workload": {"name": "api"},
                       "labels": {"app": "api", "app.kubernetes.io/name": "api"}},
        "orchestrator": {"cluster": {"name": "prod-eu"}},
        "host": {"name": "node-a"},
        "event": {"id": "0123456789abcdef", "stream_id": "fedcba9876543210", "sequence": 1,
                  "dataset": "container"}
    })
}

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn mapping_of<'a>(template: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = &template["template"]["mappings"];
    for part in path.split('.') {
        node = node.get("properties")?.get(part)?;
    }
    Some(node)
}

#[test]
fn every_record_field_is_mapped() {
    let record = full_record();
    let _: nevermore_schemas::LogRecord =
        serde_json::from_value(record.clone()).expect("the example is a LogRecord");
    for text in [ES_INDEX_TEMPLATE, OPENSEARCH_INDEX_TEMPLATE] {
        let template: Value = serde_json::from_str(text).expect("template is JSON");
        let mut paths = Vec::new();
        leaf_paths(&record, "", &mut paths);
        for path in paths {
            if path.starts_with("kubernetes.labels.") {
                continue;
            }
            let mapping = mapping_of(&template, &path);
            assert!(
                mapping.and_then(|m| m.get("type")).is_some(),
                "{path} is not mapped"
            );
        }
        assert_eq!(
            mapping_of(&template, "@timestamp").expect("ts")["type"],
            "date_nanos"
        );
    }
}

#[test]
fn opensearch_template_differs_only_in_labels() {
    let mut es: Value = serde_json::from_str(ES_INDEX_TEMPLATE).expect("json");
    let mut os: Value = serde_json::from_str(OPENSEARCH_INDEX_TEMPLATE).expect("json");
    for t in [&mut es, &mut os] {
        let mappings = t["template"]["mappings"].as_object_mut().expect("mappings");
        mappings.remove("dynamic_templates");
        mappings["properties"]["kubernetes"]["properties"]
            .as_object_mut()
            .expect("kubernetes")
            .remove("labels");
    }
    assert_eq!(es, os);
}
