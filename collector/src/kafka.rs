//! librdkafka client settings shared by the Kafka sink and the relay: our options mapped to
//! librdkafka's names, and a client context that logs through `tracing`.

use crate::config::{KafkaSasl, KafkaSinkConfig, KafkaTls, Oversize, RelayKafka};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// The producer settings of a Kafka sink. Idempotence and `acks=all` are not options: the
/// delivery report must mean "stored on every in-sync replica, in order".
pub fn producer_config(cfg: &KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.codec", cfg.compression.as_str())
        .set("linger.ms", cfg.linger.as_millis().to_string())
        .set("batch.size", cfg.batch_max_bytes.to_string())
        .set("batch.num.messages", cfg.batch_max_records.to_string())
        // With a dead-letter topic, oversize records are sent whole: the client limit is
        // librdkafka's own maximum, and the broker's topic setting decides.
        .set(
            "message.max.bytes",
            match cfg.oversize {
                Oversize::Truncate => cfg.message_max_bytes,
                Oversize::DeadLetter { .. } => 1_000_000_000,
            }
            .to_string(),
        )
        .set(
            "message.timeout.ms",
            cfg.message_timeout.as_millis().to_string(),
        )
        .set("log.connection.close", "false");
    security(&mut c, cfg.tls.as_ref(), cfg.sasl.as_ref());
    for (k, v) in &cfg.librdkafka_options {
        c.set(k, v);
    }
    c
}

/// The consumer settings of the relay: offsets are stored and committed by the relay only,
/// after its sinks acknowledged.
pub fn consumer_config(cfg: &RelayKafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            if cfg.start_from_earliest {
                "earliest"
            } else {
                "latest"
            },
        )
        .set(
            "session.timeout.ms",
            cfg.session_timeout.as_millis().to_string(),
        )
        .set("enable.partition.eof", "false")
        // Prefetch (librdkafka's default is 64 MiB): the relay's batches are the buffer that
        // matters; this keeps its memory near batch size.
        .set("queued.max.messages.kbytes", "16384")
        .set("log.connection.close", "false");
    if let Some(id) = &cfg.instance_id {
        c.set("group.instance.id", id);
    }
    security(&mut c, cfg.tls.as_ref(), cfg.sasl.as_ref());
    for (k, v) in &cfg.librdkafka_options {
        c.set(k, v);
    }
    c
}

fn security(c: &mut ClientConfig, tls: Option<&KafkaTls>, sasl: Option<&KafkaSasl>) {
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(t) = tls {
        if let Some(p) = &t.ca_file {
            c.set("ssl.ca.location", p.display().to_string());
        }
        if let Some(p) = &t.cert_file {
            c.set("ssl.certificate.location", p.display().to_string());
        }
        if let Some(p) = &t.key_file {
            c.set("ssl.key.location", p.display().to_string());
        }
        if let Some(p) = &t.key_password {
            c.set("ssl.key.password", p);
        }
        c.set(
            "ssl.endpoint.identification.algorithm",
            if t.verify_hostname { "https" } else { "none" },
        );
    }
    if let Some(s) = sasl {
        c.set("sasl.mechanisms", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", &s.password);
    }
}

/// Logs librdkafka's messages and errors through `tracing`, with the client's role.
#[derive(Debug, Clone)]
pub struct TracingContext {
    pub name: String,
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let name = &self.name;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(client = %name, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(client = %name, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(client = %name, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(client = %name, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker connection errors are expected while a broker is down; librdkafka retries.
        tracing::warn!(client = %self.name, error = %error, reason, "kafka client error");
    }
}

/// librdkafka properties about reaching and authenticating to brokers, which the read-back
/// consumer takes from a sink's `librdkafka_options`.
const CONNECTION_PREFIXES: &[&str] = &[
    "ssl.",
    "sasl.",
    "security.",
    "socket.",
    "broker.",
    "client.",
    "enable.ssl",
    "api.version",
    "reconnect.",
    "resolve.",
    "client.dns",
];

/// The `event.id`s of our streams among the last `window` messages of every partition of `topics`: after a
/// failed delivery, what the broker already stored of the unacknowledged window (a broker that
/// restarted may have stored a request whose answer never came, and forgotten the producer
/// id that would have made the retry a no-op). Blocking; bounded by `timeout`.
pub fn read_back_ids(
    cfg: &KafkaSinkConfig,
    topics: &[String],
    streams: &std::collections::HashSet<u64>,
    window: u64,
    timeout: std::time::Duration,
) -> Result<std::collections::HashSet<u64>, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("group.id", "nevermore-read-back")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("log.connection.close", "false");
    security(&mut c, cfg.tls.as_ref(), cfg.sasl.as_ref());
    // The connection settings among the pass-through options (the producer's own are not
    // valid for a consumer).
    for (k, v) in &cfg.librdkafka_options {
        if CONNECTION_PREFIXES.iter().any(|p| k.starts_with(p)) {
            c.set(k, v);
        }
    }
    let consumer: BaseConsumer<TracingContext> = c.create_with_context(TracingContext {
        name: "read-back".into(),
    })?;
    let deadline = std::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let mut tpl = TopicPartitionList::new();
    let mut open = 0usize;
    for topic in topics {
        let meta = consumer.fetch_metadata(Some(topic), left())?;
        for t in meta.topics() {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(topic, p.id(), left())?;
                if high > low {
                    let from = (high - i64::try_from(window).unwrap_or(i64::MAX)).max(low);
                    tpl.add_partition_offset(topic, p.id(), Offset::Offset(from))?;
                    open += 1;
                }
            }
        }
    }
    let mut ids = std::collections::HashSet::new();
    if open == 0 {
        return Ok(ids);
    }
    consumer.assign(&tpl)?;
    #[derive(serde::Deserialize)]
    struct Id {
        event: IdEvent,
    }
    #[derive(serde::Deserialize)]
    struct IdEvent {
        id: String,
        stream_id: String,
    }
    while open > 0 && !left().is_zero() {
        match consumer.poll(left().min(std::time::Duration::from_millis(200))) {
            Some(Ok(m)) => {
                // Only records of our streams: the tails hold other producers' records too.
                let parsed = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Id>(p).ok());
                if let Some(r) = parsed
                    && let (Ok(id), Ok(sid)) = (
                        u64::from_str_radix(&r.event.id, 16),
                        u64::from_str_radix(&r.event.stream_id, 16),
                    )
                    && streams.contains(&sid)
                {
                    ids.insert(id);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(ids)
}

impl rdkafka::consumer::ConsumerContext for TracingContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaCompression, TopicPart, TopicTemplate};
    use std::time::Duration;

    fn sink() -> KafkaSinkConfig {
        KafkaSinkConfig {
            bootstrap_servers: "b:9093".into(),
            topic: TopicTemplate {
                parts: vec![TopicPart::Literal("logs".into())],
            },
            fallback_topic: "logs".into(),
            compression: KafkaCompression::Zstd,
            batch_max_bytes: 1_000_000,
            batch_max_records: 10_000,
            linger: Duration::from_millis(5),
            message_max_bytes: 1_000_000,
            message_timeout: Duration::from_secs(300),
            oversize: Oversize::Truncate,
            tls: Some(KafkaTls {
                ca_file: Some("/ca.pem".into()),
                cert_file: Some("/c.pem".into()),
                key_file: Some("/k.pem".into()),
                key_password: Some("pw".into()),
                verify_hostname: false,
            }),
            sasl: Some(KafkaSasl {
                mechanism: "SCRAM-SHA-512".into(),
                username: "u".into(),
                password: "p".into(),
            }),
            librdkafka_options: vec![("socket.keepalive.enable".into(), "true".into())],
        }
    }

    #[test]
    fn producer_settings_as_librdkafka_names_them() {
        let c = producer_config(&sink());
        for (k, v) in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.codec", "zstd"),
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/ca.pem"),
            ("ssl.certificate.location", "/c.pem"),
            ("ssl.key.location", "/k.pem"),
            ("ssl.key.password", "pw"),
            ("ssl.endpoint.identification.algorithm", "none"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("socket.keepalive.enable", "true"),
        ] {
            assert_eq!(c.get(k), Some(v), "{k}");
        }
        // librdkafka accepts the whole set (names and values), without connecting.
        assert!(c.create_native_config().is_ok());
        let mut plain = sink();
        plain.tls = None;
        plain.sasl = None;
        assert_eq!(
            producer_config(&plain).get("security.protocol"),
            Some("plaintext")
        );
    }

    #[test]
    fn consumer_commits_only_what_the_relay_stores() {
        let c = consumer_config(&RelayKafka {
            bootstrap_servers: "b:9092".into(),
            topics: vec!["logs".into()],
            group_id: "g".into(),
            instance_id: Some("relay-0".into()),
            session_timeout: Duration::from_secs(45),
            start_from_earliest: true,
            tls: None,
            sasl: None,
            librdkafka_options: Vec::new(),
        });
        for (k, v) in [
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("group.instance.id", "relay-0"),
            ("security.protocol", "plaintext"),
        ] {
            assert_eq!(c.get(k), Some(v), "{k}");
        }
        assert!(c.create_native_config().is_ok());
    }
}
