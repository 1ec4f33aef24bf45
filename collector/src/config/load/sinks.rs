//! Validation of the Kafka and Elasticsearch sinks and of the `relay` section.

use super::{Cx, locate, locate_key, non_empty, positive, positive_ms, positive_usize};
use crate::config::node::Node;
use crate::config::raw::{
    RawElasticsearchSink, RawEsDeadLetter, RawKafkaSasl, RawKafkaSink, RawKafkaTls, RawOversize,
    RawRelay, RawScalar,
};
use crate::config::sink::{
    DeadLetter, ElasticsearchSinkConfig, EsAuth, EsTls, IndexTarget, KafkaCompression, KafkaSasl,
    KafkaSinkConfig, KafkaTls, Oversize, RelayConfig, RelayKafka, TopicPart, TopicTemplate,
    parse_topic_template, valid_topic,
};
use crate::config::{SinkConfig, SinkKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// librdkafka options that would break the delivery guarantee or our own settings: rejected in
/// `librdkafka_options` (the typed key is named where there is one).
const PRODUCER_RESERVED: &[(&str, &str)] = &[
    (
        "acks",
        "always `all`: the acknowledgement advances checkpoints",
    ),
    ("request.required.acks", "always `all`"),
    (
        "enable.idempotence",
        "always on: it keeps a stream's order through retries",
    ),
    ("bootstrap.servers", "use `bootstrap_servers`"),
    ("metadata.broker.list", "use `bootstrap_servers`"),
    ("compression.codec", "use `compression`"),
    ("compression.type", "use `compression`"),
    ("linger.ms", "use `linger_ms`"),
    ("queue.buffering.max.ms", "use `linger_ms`"),
    ("batch.size", "use `batch_max_bytes`"),
    ("batch.num.messages", "use `batch_max_records`"),
    ("message.max.bytes", "use `message_max_bytes`"),
    ("message.timeout.ms", "use `message_timeout_ms`"),
    ("delivery.timeout.ms", "use `message_timeout_ms`"),
    (
        "partitioner",
        "the record key decides the partition, so a stream stays in order",
    ),
    (
        "delivery.report.only.error",
        "every delivery report is an acknowledgement",
    ),
    ("transactional.id", "transactions are not used"),
];

const CONSUMER_RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `bootstrap_servers`"),
    ("metadata.broker.list", "use `bootstrap_servers`"),
    ("group.id", "use `group_id`"),
    ("group.instance.id", "use `instance_id`"),
    (
        "enable.auto.commit",
        "always off: offsets are committed after the sink acknowledged",
    ),
    ("enable.auto.offset.store", "always off"),
    ("auto.offset.reset", "use `start_from`"),
    ("session.timeout.ms", "use `session_timeout_ms`"),
    ("enable.partition.eof", "always off"),
];

pub(super) fn kafka_sink(id: &str, s: &RawKafkaSink, root: &Node, cx: &mut Cx) -> Option<SinkKind> {
    let k = |key: &'static str| vec!["sinks", id, key];
    let bootstrap_servers = non_empty(
        cx,
        root,
        &k("bootstrap_servers"),
        Some(s.bootstrap_servers.clone()),
        "",
    );
    let topic_text = non_empty(cx, root, &k("topic"), s.topic.clone(), "logs");
    let topic = parse_topic_template(&topic_text).unwrap_or_else(|msg| {
        cx.invalid(
            format!("sinks.{id}.topic"),
            locate(root, &k("topic")).pos,
            msg,
        );
        TopicTemplate {
            parts: vec![TopicPart::Literal("logs".into())],
        }
    });
    let fallback_topic = non_empty(
        cx,
        root,
        &k("fallback_topic"),
        s.fallback_topic.clone(),
        "logs",
    );
    if !valid_topic(&fallback_topic) {
        cx.invalid(
            format!("sinks.{id}.fallback_topic"),
            locate(root, &k("fallback_topic")).pos,
            "not a valid topic name (letters, digits, `.`, `_`, `-`; at most 249)",
        );
    }
    let compression = match s.compression.as_deref() {
        None | Some("none") => KafkaCompression::None,
        Some("gzip") => KafkaCompression::Gzip,
        Some("snappy") => KafkaCompression::Snappy,
        Some("lz4") => KafkaCompression::Lz4,
        Some("zstd") => KafkaCompression::Zstd,
        Some(other) => {
            cx.invalid(
                format!("sinks.{id}.compression"),
                locate(root, &k("compression")).pos,
                format!("unknown compression `{other}`, expected one of `none`, `gzip`, `snappy`, `lz4`, `zstd`"),
            );
            KafkaCompression::None
        }
    };
    let message_max_bytes = positive(
        cx,
        root,
        &k("message_max_bytes"),
        s.message_max_bytes,
        1_000_000,
    );
    if !(1000..=1_000_000_000).contains(&message_max_bytes) {
        cx.invalid(
            format!("sinks.{id}.message_max_bytes"),
            locate(root, &k("message_max_bytes")).pos,
            "must be between 1000 and 1000000000 (librdkafka's range)",
        );
    }
    let oversize = match &s.oversize {
        None => Oversize::Truncate,
        Some(RawOversize::Word(w)) if w == "truncate" => Oversize::Truncate,
        Some(RawOversize::Word(w)) => {
            cx.invalid(
                format!("sinks.{id}.oversize"),
                locate(root, &k("oversize")).pos,
                format!(
                    "unknown value `{w}`, expected `truncate` or `{{dead_letter_topic: NAME}}`"
                ),
            );
            Oversize::Truncate
        }
        Some(RawOversize::DeadLetter(d)) => {
            if !valid_topic(&d.dead_letter_topic) {
                cx.invalid(
                    format!("sinks.{id}.oversize.dead_letter_topic"),
                    locate(root, &["sinks", id, "oversize", "dead_letter_topic"]).pos,
                    "not a valid topic name (letters, digits, `.`, `_`, `-`; at most 249)",
                );
            }
            Oversize::DeadLetter {
                topic: d.dead_letter_topic.clone(),
            }
        }
    };
    let librdkafka_options = librdkafka_options(
        &format!("sinks.{id}.librdkafka_options"),
        &k("librdkafka_options"),
        s.librdkafka_options.as_ref(),
        PRODUCER_RESERVED,
        root,
        cx,
    );
    let batch_max_bytes = positive(
        cx,
        root,
        &k("batch_max_bytes"),
        s.batch_max_bytes,
        1_000_000,
    );
    let batch_max_records = positive(
        cx,
        root,
        &k("batch_max_records"),
        s.batch_max_records,
        10_000,
    );
    // librdkafka's own ranges, checked here so that `check-config` finds them.
    for (key, value, max) in [
        ("batch_max_bytes", Some(batch_max_bytes), 2_147_483_647),
        ("batch_max_records", Some(batch_max_records), 1_000_000),
        ("linger_ms", s.linger_ms, 900_000),
        ("message_timeout_ms", s.message_timeout_ms, 2_147_483_647),
    ] {
        if value.is_some_and(|v| v > max) {
            cx.invalid(
                format!("sinks.{id}.{key}"),
                locate(root, &["sinks", id, key]).pos,
                format!("must be at most {max} (librdkafka's limit)"),
            );
        }
    }
    let linger = Duration::from_millis(s.linger_ms.unwrap_or(5));
    let message_timeout = Duration::from_millis(s.message_timeout_ms.unwrap_or(300_000));
    if !message_timeout.is_zero() && message_timeout <= linger {
        cx.invalid(
            format!("sinks.{id}.message_timeout_ms"),
            locate(root, &k("message_timeout_ms")).pos,
            "must be greater than `linger_ms` (or 0: wait for ever)",
        );
    }
    Some(SinkKind::Kafka(KafkaSinkConfig {
        bootstrap_servers,
        topic,
        fallback_topic,
        compression,
        batch_max_bytes,
        batch_max_records,
        linger,
        message_max_bytes,
        message_timeout,
        oversize,
        tls: s.tls.as_ref().map(kafka_tls),
        sasl: s.sasl.as_ref().map(kafka_sasl),
        librdkafka_options,
    }))
}

fn kafka_tls(t: &RawKafkaTls) -> KafkaTls {
    KafkaTls {
        ca_file: t.ca_file.clone(),
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        key_password: t.key_password.clone(),
        verify_hostname: t.verify_hostname.unwrap_or(true),
    }
}

fn kafka_sasl(s: &RawKafkaSasl) -> KafkaSasl {
    KafkaSasl {
        mechanism: s.mechanism.clone(),
        username: s.username.clone(),
        password: s.password.clone(),
    }
}

fn librdkafka_options(
    path: &str,
    keys: &[&str],
    given: Option<&BTreeMap<String, RawScalar>>,
    reserved: &[(&str, &str)],
    root: &Node,
    cx: &mut Cx,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in given.into_iter().flatten() {
        if let Some((_, why)) = reserved.iter().find(|(r, _)| r == key) {
            let mut at: Vec<&str> = keys.to_vec();
            at.push(key);
            cx.invalid(
                format!("{path}.{key}"),
                locate_key(root, &at),
                format!("not settable here: {why}"),
            );
            continue;
        }
        let text = value.to_text();
        // librdkafka checks names and values without connecting anywhere.
        let mut probe = rdkafka::ClientConfig::new();
        probe.set(key, &text);
        if let Err(e) = probe.create_native_config() {
            let mut at: Vec<&str> = keys.to_vec();
            at.push(key);
            cx.invalid(
                format!("{path}.{key}"),
                locate_key(root, &at),
                format!("librdkafka refuses it: {e}"),
            );
            continue;
        }
        out.push((key.clone(), text));
    }
    out
}

pub(super) fn elasticsearch_sink(
    id: &str,
    s: &RawElasticsearchSink,
    data_dir: &std::path::Path,
    file_paths: &mut Vec<(PathBuf, String)>,
    root: &Node,
    cx: &mut Cx,
) -> Option<SinkKind> {
    let k = |key: &'static str| vec!["sinks", id, key];
    let p = |key: &str| format!("sinks.{id}.{key}");
    if s.endpoints.is_empty() {
        cx.invalid(
            p("endpoints"),
            locate(root, &k("endpoints")).pos,
            "must name at least one endpoint",
        );
    }
    let ep_node = locate(root, &k("endpoints"));
    for (i, e) in s.endpoints.iter().enumerate() {
        let url_ok = reqwest::Url::parse(e).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if !url_ok {
            cx.invalid(
                format!("sinks.{id}.endpoints[{i}]"),
                super::element_pos(ep_node, i),
                format!("`{e}` is not an http:// or https:// url"),
            );
        }
    }
    let target = match (&s.index, &s.data_stream) {
        (Some(_), Some(_)) => {
            cx.invalid(
                p("data_stream"),
                locate_key(root, &k("data_stream")),
                "give either `index` or `data_stream`, not both",
            );
            None
        }
        (_, Some(ds)) => Some(IndexTarget::DataStream(ds.clone())),
        (index, None) => {
            let index = index.clone().unwrap_or_else(|| "logs-nevermore".into());
            if let Err(msg) = check_index_pattern(&index) {
                cx.invalid(p("index"), locate(root, &k("index")).pos, msg);
            }
            Some(IndexTarget::Index(index))
        }
    };
    if let IndexTarget::DataStream(ds) = target.as_ref()?
        && (ds.contains('%') || check_index_pattern(ds).is_err())
    {
        cx.invalid(
            p("data_stream"),
            locate(root, &k("data_stream")).pos,
            "not a valid data stream name (lowercase, no `%` fields)",
        );
    }
    let auth = s.auth.as_ref().and_then(|a| {
        let given = [
            a.username.is_some() || a.password.is_some(),
            a.bearer_token.is_some(),
            a.api_key.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            cx.invalid(
                p("auth"),
                locate(root, &k("auth")).pos,
                "give one of `{username, password}`, `{bearer_token}` or `{api_key}`",
            );
            return None;
        }
        if let Some(token) = &a.bearer_token {
            return Some(EsAuth::Bearer {
                token: token.clone(),
            });
        }
        if let Some(key) = &a.api_key {
            return Some(EsAuth::ApiKey { key: key.clone() });
        }
        match (&a.username, &a.password) {
            (Some(u), Some(pw)) => Some(EsAuth::Basic {
                username: u.clone(),
                password: pw.clone(),
            }),
            _ => {
                cx.invalid(
                    p("auth"),
                    locate(root, &k("auth")).pos,
                    "basic auth needs both `username` and `password`",
                );
                None
            }
        }
    });
    let gzip = match s.compression.as_deref() {
        None | Some("gzip") => true,
        Some("none") => false,
        Some(other) => {
            cx.invalid(
                p("compression"),
                locate(root, &k("compression")).pos,
                format!("unknown compression `{other}`, expected `gzip` or `none`"),
            );
            true
        }
    };
    let dead_letter = match &s.dead_letter {
        None => DeadLetter::File(data_dir.join(format!("dead-letter-{id}.ndjson"))),
        Some(RawEsDeadLetter {
            file: Some(f),
            index: None,
        }) => {
            if let Some((_, other)) = file_paths.iter().find(|(q, _)| q == f) {
                cx.invalid(
                    p("dead_letter.file"),
                    locate(root, &["sinks", id, "dead_letter", "file"]).pos,
                    format!("duplicate path: sink `{other}` writes the same file"),
                );
            }
            file_paths.push((f.clone(), id.to_owned()));
            DeadLetter::File(f.clone())
        }
        Some(RawEsDeadLetter {
            file: None,
            index: Some(i),
        }) => DeadLetter::Index(i.clone()),
        Some(_) => {
            cx.invalid(
                p("dead_letter"),
                locate(root, &k("dead_letter")).pos,
                "give one of `{file: PATH}` or `{index: NAME}`",
            );
            DeadLetter::File(PathBuf::new())
        }
    };
    let retry_initial_backoff = positive_ms(
        cx,
        root,
        &k("retry_initial_backoff_ms"),
        s.retry_initial_backoff_ms,
        100,
    );
    let retry_max_backoff = positive_ms(
        cx,
        root,
        &k("retry_max_backoff_ms"),
        s.retry_max_backoff_ms,
        10_000,
    );
    if retry_max_backoff < retry_initial_backoff {
        cx.invalid(
            p("retry_max_backoff_ms"),
            locate(root, &k("retry_max_backoff_ms")).pos,
            "must not be below `retry_initial_backoff_ms`",
        );
    }
    Some(SinkKind::Elasticsearch(ElasticsearchSinkConfig {
        endpoints: s
            .endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_owned())
            .collect(),
        target: target?,
        auth,
        tls: EsTls {
            ca_file: s.tls.as_ref().and_then(|t| t.ca_file.clone()),
            insecure_skip_verify: s
                .tls
                .as_ref()
                .and_then(|t| t.insecure_skip_verify)
                .unwrap_or(false),
        },
        batch_max_records: positive_usize(
            cx,
            root,
            &k("batch_max_records"),
            s.batch_max_records,
            1000,
        ),
        batch_max_bytes: positive_usize(
            cx,
            root,
            &k("batch_max_bytes"),
            s.batch_max_bytes,
            5 << 20,
        ),
        flush_interval: Duration::from_millis(s.flush_interval_ms.unwrap_or(1000)),
        gzip,
        request_timeout: positive_ms(
            cx,
            root,
            &k("request_timeout_ms"),
            s.request_timeout_ms,
            60_000,
        ),
        retry_initial_backoff,
        retry_max_backoff,
        dead_letter,
        install_template: s.install_template.unwrap_or(true),
        template_name: non_empty(
            cx,
            root,
            &k("template_name"),
            s.template_name.clone(),
            &default_template_name(s.data_stream.as_deref().or(s.index.as_deref())),
        ),
    }))
}

/// `nevermore-` and the index name up to its first date field, so that sinks writing different
/// indices do not overwrite each other's template.
fn default_template_name(index: Option<&str>) -> String {
    let index = index.unwrap_or("logs-nevermore");
    let stem = index
        .split('%')
        .next()
        .unwrap_or("")
        .trim_end_matches(['-', '.', '_']);
    format!("nevermore-{}", if stem.is_empty() { "logs" } else { stem })
}

/// An index name, with `%Y %m %d %H` fields allowed: lowercase, none of Elasticsearch's
/// forbidden characters.
fn check_index_pattern(index: &str) -> Result<(), String> {
    if index.is_empty() || index.starts_with(['-', '_', '+']) {
        return Err("an index name must not be empty or start with `-`, `_` or `+`".into());
    }
    // The date fields (`%Y`) are the only capitals allowed.
    if index
        .replace("%Y", "")
        .replace("%H", "")
        .chars()
        .any(char::is_uppercase)
    {
        return Err("an index name must be lowercase".into());
    }
    if let Some(c) = index.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!("`{c}` is not allowed in an index name"));
    }
    let mut chars = index.chars();
    while let Some(c) = chars.next() {
        if c == '%' && !matches!(chars.next(), Some('Y' | 'm' | 'd' | 'H')) {
            return Err("only `%Y`, `%m`, `%d` and `%H` may follow `%` in an index name".into());
        }
    }
    Ok(())
}

pub(super) fn relay(
    r: &RawRelay,
    sinks: &[SinkConfig],
    root: &Node,
    cx: &mut Cx,
) -> Option<RelayConfig> {
    let kk = |key: &'static str| vec!["relay", "kafka", key];
    let kafka = &r.kafka;
    if kafka.topics.is_empty() {
        cx.invalid(
            "relay.kafka.topics".into(),
            locate(root, &kk("topics")).pos,
            "must name at least one topic",
        );
    }
    let topics_node = locate(root, &kk("topics"));
    for (i, t) in kafka.topics.iter().enumerate() {
        let ok = match t.strip_prefix('^') {
            Some(_) => regex::Regex::new(t).is_ok(),
            None => valid_topic(t),
        };
        if !ok {
            cx.invalid(
                format!("relay.kafka.topics[{i}]"),
                super::element_pos(topics_node, i),
                format!("`{t}` is neither a topic name nor a `^regex`"),
            );
        }
    }
    let start_from_earliest = match kafka.start_from.as_deref() {
        None | Some("earliest") => true,
        Some("latest") => false,
        Some(other) => {
            cx.invalid(
                "relay.kafka.start_from".into(),
                locate(root, &kk("start_from")).pos,
                format!("unknown value `{other}`, expected `earliest` or `latest`"),
            );
            true
        }
    };
    let relayable = |s: &SinkConfig| {
        matches!(
            s.kind,
            SinkKind::Elasticsearch(_) | SinkKind::Embedded(_) | SinkKind::File { .. }
        )
    };
    let names: Vec<String> = match &r.sinks {
        None => sinks
            .iter()
            .filter(|s| relayable(s))
            .map(|s| s.id.clone())
            .collect(),
        Some(list) => {
            let node = locate(root, &["relay", "sinks"]);
            for (i, name) in list.iter().enumerate() {
                let at = super::element_pos(node, i);
                match sinks.iter().find(|s| &s.id == name) {
                    None => cx.invalid(
                        format!("relay.sinks[{i}]"),
                        at,
                        format!("unknown sink `{name}`"),
                    ),
                    Some(s) if !relayable(s) => cx.invalid(
                        format!("relay.sinks[{i}]"),
                        at,
                        "the relay writes only to sinks of type `elasticsearch`, `embedded` or `file`",
                    ),
                    Some(_) => {}
                }
            }
            list.clone()
        }
    };
    if names.is_empty() {
        cx.invalid(
            "relay".into(),
            locate(root, &["relay"]).pos,
            "no sink to write: add a sink of type `elasticsearch`, `embedded` or `file`",
        );
    }
    Some(RelayConfig {
        kafka: RelayKafka {
            bootstrap_servers: non_empty(
                cx,
                root,
                &kk("bootstrap_servers"),
                Some(kafka.bootstrap_servers.clone()),
                "",
            ),
            topics: kafka.topics.clone(),
            group_id: non_empty(
                cx,
                root,
                &kk("group_id"),
                kafka.group_id.clone(),
                "nevermore-relay",
            ),
            instance_id: kafka.instance_id.clone().filter(|i| !i.is_empty()),
            session_timeout: positive_ms(
                cx,
                root,
                &kk("session_timeout_ms"),
                kafka.session_timeout_ms,
                45_000,
            ),
            start_from_earliest,
            tls: kafka.tls.as_ref().map(kafka_tls),
            sasl: kafka.sasl.as_ref().map(kafka_sasl),
            librdkafka_options: librdkafka_options(
                "relay.kafka.librdkafka_options",
                &kk("librdkafka_options"),
                kafka.librdkafka_options.as_ref(),
                CONSUMER_RESERVED,
                root,
                cx,
            ),
        },
        sinks: names,
        batch_max_records: positive_usize(
            cx,
            root,
            &["relay", "batch_max_records"],
            r.batch_max_records,
            2000,
        ),
        batch_timeout: positive_ms(
            cx,
            root,
            &["relay", "batch_timeout_ms"],
            r.batch_timeout_ms,
            500,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_templates() {
        let t =
            parse_topic_template("logs-{kubernetes.namespace}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.parts,
            [
                TopicPart::Literal("logs-".into()),
                TopicPart::Field("kubernetes.namespace".into())
            ]
        );
        assert!(parse_topic_template("logs-{nope}").is_err());
        assert!(parse_topic_template("logs-{kubernetes.namespace").is_err());
        assert!(parse_topic_template("a}b").is_err());
        assert!(parse_topic_template("a b").is_err());
        assert!(valid_topic("logs.a_b-c"));
        assert!(!valid_topic(".."));
        assert!(!valid_topic(&"x".repeat(250)));
    }

    #[test]
    fn template_names() {
        assert_eq!(default_template_name(None), "nevermore-logs-nevermore");
        assert_eq!(
            default_template_name(Some("logs-%Y.%m.%d")),
            "nevermore-logs"
        );
        assert_eq!(default_template_name(Some("%Y")), "nevermore-logs");
        assert_eq!(default_template_name(Some("app-a")), "nevermore-app-a");
    }

    #[test]
    fn index_patterns() {
        assert!(check_index_pattern("logs-%Y.%m.%d").is_ok());
        assert!(check_index_pattern("Logs").is_err());
        assert!(check_index_pattern("logs-%x").is_err());
        assert!(check_index_pattern("_logs").is_err());
        assert!(check_index_pattern("lo*gs").is_err());
    }
}
