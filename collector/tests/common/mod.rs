//! The collector in-process against a temporary pods directory and a file sink.
#![allow(dead_code, clippy::unwrap_used)]

pub mod kafka;

use nevermore_collector::config::{
    CollectorConfig, LineFormat, ParseConfig, PipelineConfig, SinkConfig, SinkKind, SourceConfig,
    SourceKind, TelemetryConfig,
};
use std::path::Path;
use std::time::Duration;

pub fn config(root: &Path, out: &Path) -> CollectorConfig {
    CollectorConfig {
        node_name: "node-a".into(),
        cluster: "test".into(),
        data_dir: root.join("data"),
        sources: vec![SourceConfig {
            id: "pods".into(),
            kind: SourceKind::Kubernetes {
                pods_dir: root.join("pods"),
            },
            parse: ParseConfig {
                format: LineFormat::Container,
                max_record_bytes: 1 << 20,
                partial_timeout: Duration::from_secs(5),
                multiline: None,
                json_level: true,
            },
        }],
        sinks: vec![SinkConfig {
            id: "out".into(),
            inputs: vec!["pods".into()],
            kind: SinkKind::File {
                path: out.to_owned(),
            },
        }],
        relay: None,
        telemetry: TelemetryConfig { listen: None },
        pipeline: PipelineConfig {
            batch_timeout: Duration::from_millis(20),
            scan_interval: Duration::from_millis(300),
            checkpoint_interval: Duration::from_millis(50),
            batch_max_records: 256,
            ..PipelineConfig::default()
        },
    }
}

pub struct Running {
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn start(cfg: CollectorConfig) -> Running {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        nevermore_collector::run(cfg, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running { stop, task }
}

pub async fn stop(r: Running) {
    let _ = r.stop.send(());
    r.task.await.unwrap();
}
