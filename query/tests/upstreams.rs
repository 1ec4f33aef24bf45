//! The metric upstreams against the real servers: one generated OpenMetrics fixture
//! backfilled into Prometheus (external label `replica="a"`), imported into VictoriaMetrics and
//! loaded as static files; every selection must give the fixture's own answer everywhere.

#![allow(clippy::unwrap_used)]

mod common;

use common::metric_servers::{Prometheus, VictoriaMetrics};
use nevermore_promql::model::{
    Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample, SelectHints, SelectRequest, Series,
};
use nevermore_query::metrics::upstream::{
    RemoteRead, ResponseType, StaticFiles, Upstream, UpstreamError, VmExport, prompb,
};
use prost::Message;
use std::time::Duration;

/// 2023-11-14T22:13:20Z, in seconds.
const T0: i64 = 1_700_000_000;
const STEP: i64 = 15;
const POINTS: i64 = 2 * 3600 / STEP;
/// The series only Prometheus and the static files hold exactly.
const EXTREME: &str = "extreme_values";

/// VictoriaMetrics stores values as decimals of about 12 significant digits.
const VM_PRECISION: f64 = 1e-11;
const TIMEOUT: Duration = Duration::from_secs(20);

/// Millisecond time of point `i` (a few ms of deterministic jitter: precision must survive).
fn t_ms(i: i64) -> i64 {
    (T0 + i * STEP) * 1000 + (i * 7) % 13
}

/// The fixture: counters and gauges, several label sets, one counter reset, one series only
/// in the second hour, awkward label values, extreme and infinite values.
fn fixture() -> Vec<Series> {
    let mut out = Vec::new();
    let mut add = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> Option<f64>| {
        let samples = (0..=POINTS)
            .filter_map(|i| f(i).map(|v| Sample { t: t_ms(i), v }))
            .collect();
        out.push(Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples,
        });
    };
    let name = ("__name__", "http_requests_total");
    add(
        &[name, ("job", "api"), ("instance", "a:1"), ("code", "200")],
        &|i| Some((i * 3) as f64),
    );
    add(
        &[name, ("job", "api"), ("instance", "a:1"), ("code", "500")],
        &|i| Some((i / 10) as f64),
    );
    // Restarts after the first hour.
    add(
        &[name, ("job", "web"), ("instance", "w:1"), ("code", "200")],
        &|i| {
            Some(if i < POINTS / 2 {
                i * 5
            } else {
                (i - POINTS / 2) * 2
            } as f64)
        },
    );
    add(&[("__name__", "big_counter_total"), ("job", "api")], &|i| {
        Some(1.5e15 + (i as f64) * 123_456.789)
    });
    let temp = ("__name__", "temperature_celsius");
    add(&[temp, ("room", "kitchen")], &|i| {
        Some(20.0 + ((i % 17) as f64) * 0.25 - 3.0)
    });
    add(&[temp, ("room", "hall")], &|i| {
        Some(match i {
            100 => f64::INFINITY,
            101 => f64::NEG_INFINITY,
            _ => -5.5 + (i % 3) as f64,
        })
    });
    // Magnitudes VictoriaMetrics cannot keep side by side (see `vm_values_are_lossy`).
    add(&[("__name__", EXTREME), ("kind", "wide")], &|i| {
        Some(match i % 4 {
            0 => 1e-300,
            1 => -1.7976931348623157e308,
            2 => f64::MIN_POSITIVE,
            _ => 0.1 + i as f64,
        })
    });
    add(
        &[temp, ("room", "cellar"), ("path", "/a \"b\"\\c\nd")],
        &|i| Some(((i * 37) % 101) as f64 / 7.0),
    );
    add(&[("__name__", "late_gauge"), ("zone", "z1")], &|i| {
        (i > POINTS / 2).then_some(i as f64)
    });
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn value_text(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

/// The fixture as OpenMetrics text, metric families together.
fn openmetrics(series: &[Series]) -> String {
    let mut out = String::new();
    let mut family = "";
    for s in series {
        let name = s.labels.metric_name().unwrap();
        if name != family {
            family = name;
            match name.strip_suffix("_total") {
                Some(base) => out.push_str(&format!(
                    "# HELP {base} A counter.\n# TYPE {base} counter\n"
                )),
                None => out.push_str(&format!("# HELP {name} A gauge.\n# TYPE {name} gauge\n")),
            }
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value)))
            .collect();
        for x in &s.samples {
            out.push_str(&format!(
                "{name}{{{}}} {} {}\n",
                labels.join(","),
                value_text(x.v),
                seconds(x.t)
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

fn m(name: &str, op: &str, value: &str) -> Matcher {
    let re = || regex::Regex::new(&format!("^(?:{value})$")).unwrap();
    let op = match op {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::Re(re()),
        "!~" => MatchOp::NotRe(re()),
        _ => panic!("op {op}"),
    };
    Matcher::new(op, name, value)
}

fn req(matchers: Vec<Matcher>, start: i64, end: i64) -> SelectRequest {
    SelectRequest {
        matchers,
        start,
        end,
        hints: SelectHints::default(),
    }
}

/// What an upstream holding `series` (plus `extra` labels on each) must answer.
fn expected(series: &[Series], extra: &[(&str, &str)], r: &SelectRequest) -> Vec<Series> {
    let mut out: Vec<Series> = series
        .iter()
        .map(|s| {
            let mut labels = s.labels.clone();
            for (k, v) in extra {
                labels.set(k, v);
            }
            Series {
                labels,
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| x.t >= r.start && x.t <= r.end)
                    .collect(),
            }
        })
        .filter(|s| !s.samples.is_empty() && s.labels.matches(&r.matchers))
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Fails with a short account of the first difference (series are long).
fn assert_same(got: Vec<Series>, want: Vec<Series>, context: &str) {
    assert_close(got, want, context, 0.0);
}

/// VictoriaMetrics keeps about 12 significant decimal digits of a value: compares values
/// within `rel` relative error (bit-exact when 0; NaN bit patterns always exactly).
fn assert_close(got: Vec<Series>, want: Vec<Series>, context: &str, rel: f64) {
    let (got, want) = (exact(got), exact(want));
    let same = |g: &(i64, u64), w: &(i64, u64)| {
        let (a, b) = (f64::from_bits(g.1), f64::from_bits(w.1));
        g.0 == w.0
            && (g.1 == w.1
                || (rel > 0.0 && a.is_finite() && b.is_finite() && (a - b).abs() <= rel * b.abs()))
    };
    let close = got.len() == want.len()
        && got.iter().zip(&want).all(|((lg, g), (lw, w))| {
            lg == lw && g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same(a, b))
        });
    if close {
        return;
    }
    let names = |v: &[(String, Vec<(i64, u64)>)]| {
        v.iter()
            .map(|(l, s)| format!("{l} ({} samples)", s.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&got), names(&want), "{context}: series differ");
    for ((l, g), (_, w)) in got.iter().zip(&want) {
        let differs = |i: usize| match (g.get(i), w.get(i)) {
            (Some(a), Some(b)) => !same(a, b),
            _ => true,
        };
        if let Some(i) = (0..g.len().max(w.len())).find(|&i| differs(i)) {
            panic!(
                "{context}: {l}: sample {i} differs: got {:?}, want {:?} (as f64: {:?} vs {:?})",
                g.get(i),
                w.get(i),
                g.get(i).map(|x| f64::from_bits(x.1)),
                w.get(i).map(|x| f64::from_bits(x.1))
            );
        }
    }
}

/// Series with values as bits, in label order: NaNs compare, stale markers stay distinct.
fn exact(mut series: Vec<Series>) -> Vec<(String, Vec<(i64, u64)>)> {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

struct Env {
    _prom: Prometheus,
    _vm: VictoriaMetrics,
    _dir: tempfile::TempDir,
    prom_url: String,
    vm_url: String,
    series: Vec<Series>,
    upstreams: Vec<(Upstream, &'static [(&'static str, &'static str)])>,
}

fn env() -> Env {
    let series = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.om");
    std::fs::write(&path, openmetrics(&series)).unwrap();
    let prom = Prometheus::start(&path, &[("replica", "a")]);
    let vm = VictoriaMetrics::start();
    vm.import_openmetrics_file(&path);
    let client = reqwest::Client::new();
    let replica: &'static [(&str, &str)] = &[("replica", "a")];
    let upstreams = vec![
        (
            Upstream::Prometheus(RemoteRead::new(
                "prom-streamed",
                prom.url(),
                TIMEOUT,
                client.clone(),
                None,
            )),
            replica,
        ),
        (
            Upstream::Prometheus(
                RemoteRead::new("prom-samples", prom.url(), TIMEOUT, client.clone(), None)
                    .with_response_type(ResponseType::Samples),
            ),
            replica,
        ),
        (
            Upstream::VictoriaMetrics(VmExport::new("vm", vm.url(), TIMEOUT, client.clone(), None)),
            &[][..],
        ),
        (
            Upstream::Static(StaticFiles::load("static", std::slice::from_ref(&path)).unwrap()),
            &[][..],
        ),
    ];
    Env {
        prom_url: prom.url(),
        vm_url: vm.url(),
        _prom: prom,
        _vm: vm,
        _dir: dir,
        series,
        upstreams,
    }
}

fn selections() -> Vec<(&'static str, Vec<Matcher>)> {
    vec![
        ("name", vec![m("__name__", "=", "http_requests_total")]),
        (
            "name and not-equal",
            vec![
                m("__name__", "=", "http_requests_total"),
                m("code", "!=", "200"),
            ],
        ),
        (
            "name and regex",
            vec![
                m("__name__", "=", "http_requests_total"),
                m("job", "=~", "a.i|web"),
            ],
        ),
        (
            "name regex and negative regex (matches absent labels)",
            vec![
                m("__name__", "=~", "temp.*|http_requests_total"),
                m("job", "!~", "api"),
            ],
        ),
        ("name regex only", vec![m("__name__", "=~", ".+_total")]),
        (
            "escaped label value",
            vec![m("path", "=", "/a \"b\"\\c\nd")],
        ),
        (
            "escaped label value by regex",
            vec![m("path", "=~", "/a \"b\"\\\\c\\nd")],
        ),
        ("label without name", vec![m("room", "=~", "kitchen|hall")]),
        (
            "empty value means absent",
            vec![m("__name__", "=~", ".+"), m("job", "=", "")],
        ),
        (
            "nothing matches",
            vec![m("__name__", "=", "no_such_metric")],
        ),
    ]
}

fn windows() -> Vec<(&'static str, i64, i64)> {
    vec![
        ("everything", t_ms(0) - 3_600_000, t_ms(POINTS) + 3_600_000),
        ("first half hour", t_ms(0), t_ms(120) - 1),
        // Both ends on samples: the window is inclusive.
        ("exact sample bounds", t_ms(100), t_ms(200)),
        ("one sample", t_ms(333), t_ms(333)),
        ("between samples", t_ms(50) + 1, t_ms(51) - 1),
        (
            "second hour, partly past the end",
            t_ms(POINTS / 2 + 7) - 3,
            t_ms(POINTS) + 60_000,
        ),
        ("before the data", t_ms(0) - 7_200_000, t_ms(0) - 1),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_agree_with_the_fixture() {
    let env = env();
    let mut checked = 0;
    for (what, matchers) in selections() {
        for (window, start, end) in windows() {
            let r = req(matchers.clone(), start, end);
            for (u, extra) in &env.upstreams {
                let got = u
                    .select(&r)
                    .await
                    .unwrap_or_else(|e| panic!("{} {what} / {window}: {e}", u.name()));
                let want = expected(&env.series, extra, &r);
                let (mut got, mut want) = (got, want);
                let rel = match u {
                    Upstream::VictoriaMetrics(_) => {
                        got.retain(|s| s.labels.metric_name() != Some(EXTREME));
                        want.retain(|s| s.labels.metric_name() != Some(EXTREME));
                        VM_PRECISION
                    }
                    _ => 0.0,
                };
                assert_close(
                    got,
                    want,
                    &format!("{}: {what} over {window} [{start}, {end}]", u.name()),
                    rel,
                );
                checked += 1;
            }
        }
    }
    // The fixture selections are not all empty.
    let all = req(vec![m("__name__", "=~", ".+")], 0, i64::MAX / 2);
    for (u, _) in &env.upstreams {
        let got = u.select(&all).await.unwrap();
        assert_eq!(got.len(), env.series.len(), "{}", u.name());
        assert_eq!(
            got.iter().map(|s| s.samples.len()).sum::<usize>(),
            env.series.iter().map(|s| s.samples.len()).sum::<usize>(),
            "{}",
            u.name()
        );
    }
    assert!(checked > 200);
}

/// Prometheus applies only `name="value"` matchers to external labels by itself; the client
/// decides the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_label_matchers_on_prometheus() {
    let env = env();
    let window = (t_ms(0), t_ms(POINTS));
    let cases: Vec<(Vec<Matcher>, bool)> = vec![
        (vec![m("replica", "=", "a")], true),
        (vec![m("replica", "=", "b")], false),
        (vec![m("replica", "=~", "a|b")], true),
        (vec![m("replica", "=~", "b")], false),
        (vec![m("replica", "!=", "a")], false),
        (vec![m("replica", "!=", "b")], true),
        (vec![m("replica", "!~", "a")], false),
        (vec![m("replica", "!~", "b|c")], true),
        // Empty means absent, which `a` is not.
        (vec![m("replica", "=", "")], false),
    ];
    for (u, extra) in env.upstreams.iter().take(2) {
        for (ms, all) in &cases {
            let mut matchers = ms.clone();
            matchers.push(m("__name__", "=", "http_requests_total"));
            let r = req(matchers, window.0, window.1);
            let got = u.select(&r).await.unwrap();
            let want = expected(&env.series, extra, &r);
            assert_eq!(want.is_empty(), !all, "fixture expectation for {ms:?}");
            assert_same(got, want, &format!("{}: {ms:?}", u.name()));
        }
    }
}

/// A series larger than one frame of the streamed answer comes in several frames (made small
/// here), merged back into one series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_series_span_frames() {
    let series = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.om");
    std::fs::write(&path, openmetrics(&series)).unwrap();
    let prom = Prometheus::start_with_flags(
        &path,
        &[("replica", "a")],
        &["--storage.remote.read-max-bytes-in-frame=64"],
    );
    let u = Upstream::Prometheus(RemoteRead::new(
        "prom-frames",
        prom.url(),
        TIMEOUT,
        reqwest::Client::new(),
        None,
    ));
    for (what, matchers) in selections() {
        for (window, start, end) in windows() {
            let r = req(matchers.clone(), start, end);
            let got = u.select(&r).await.unwrap();
            assert_same(
                got,
                expected(&series, &[("replica", "a")], &r),
                &format!("{what} / {window}"),
            );
        }
    }
}

/// Both answer types really are what Prometheus sends (not a fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_both_response_types() {
    let env = env();
    for (accepted, content_type) in [
        (
            vec![
                prompb::ResponseType::StreamedXorChunks as i32,
                prompb::ResponseType::Samples as i32,
            ],
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        ),
        (
            vec![prompb::ResponseType::Samples as i32],
            "application/x-protobuf",
        ),
    ] {
        let body = prompb::ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: t_ms(0),
                end_timestamp_ms: t_ms(10),
                matchers: vec![prompb::LabelMatcher {
                    r#type: prompb::MatcherType::Eq as i32,
                    name: "__name__".into(),
                    value: "late_gauge".into(),
                }],
                hints: None,
            }],
            accepted_response_types: accepted,
        };
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/read", env.prom_url))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(
                snap::raw::Encoder::new()
                    .compress_vec(&body.encode_to_vec())
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], content_type);
    }
}

/// Staleness markers and NaN through the real servers (written with remote write: backfilling
/// cannot express them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_markers_survive() {
    let env = env();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = now - 600_000;
    let plain_nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let values = [
        1.0,
        2.0,
        f64::from_bits(STALE_NAN_BITS),
        3.0,
        plain_nan,
        4.0,
    ];
    let written = vec![Series {
        labels: Labels::from_pairs([("__name__", "stale_test"), ("k", "v")]),
        samples: values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                t: t + i as i64 * 15_000,
                v: *v,
            })
            .collect(),
    }];
    env._prom.remote_write(&written);
    env._vm.remote_write(&written);
    let r = req(vec![m("__name__", "=", "stale_test")], t - 1, t + 100_000);
    for (u, extra) in env.upstreams.iter().take(2) {
        let got = u.select(&r).await.unwrap();
        assert_same(got, expected(&written, extra, &r), u.name());
    }
    // VictoriaMetrics drops ordinary NaN at ingestion and exports the staleness marker as
    // `null`, which the client reads as the marker.
    let vm = &env.upstreams[2].0;
    let got = vm.select(&r).await.unwrap();
    let mut want = written.clone();
    want[0].samples.remove(4);
    assert_same(got, want, vm.name());
}

/// VictoriaMetrics keeps values as decimals sharing one exponent per block: next to a huge
/// value, small ones read back as 0, and about 12 significant digits survive. Prometheus and
/// the static files keep every bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_values_are_lossy() {
    let env = env();
    let r = req(vec![m("__name__", "=", EXTREME)], 0, i64::MAX / 2);
    let want = &env
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some(EXTREME))
        .unwrap()
        .samples;
    for (u, _) in &env.upstreams {
        let got = u.select(&r).await.unwrap();
        assert_eq!(got.len(), 1, "{}", u.name());
        let got = &got[0].samples;
        assert_eq!(got.len(), want.len(), "{}", u.name());
        let exact = got
            .iter()
            .zip(want)
            .all(|(a, b)| a.t == b.t && a.v.to_bits() == b.v.to_bits());
        if let Upstream::VictoriaMetrics(_) = u {
            assert!(
                !exact,
                "victoria-metrics became exact: revisit the documented quirk"
            );
            // The huge value survives (to 12 digits); the small ones are zeroed.
            assert!((got[1].v - want[1].v).abs() <= VM_PRECISION * want[1].v.abs());
            assert_eq!(got[0].v, 0.0);
            assert_eq!(got[3].v, 0.0);
        } else {
            assert!(exact, "{}", u.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths() {
    let env = env();
    let client = reqwest::Client::new();
    let r = req(
        vec![m("__name__", "=", "http_requests_total")],
        t_ms(0),
        t_ms(POINTS),
    );

    // Nothing listens: the error names the upstream and the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    for u in [
        Upstream::Prometheus(RemoteRead::new(
            "dead-prom",
            &dead,
            TIMEOUT,
            client.clone(),
            None,
        )),
        Upstream::VictoriaMetrics(VmExport::new(
            "dead-vm",
            &dead,
            TIMEOUT,
            client.clone(),
            None,
        )),
    ] {
        let e = u.select(&r).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.upstream(), u.name());
        assert!(e.url().unwrap().starts_with(&dead), "{e:?}");
        assert!(e.to_string().contains(&dead), "{e}");
    }

    // A regex Go refuses (repeat count over 1000) although Rust takes it: the server's own
    // explanation comes back.
    let bad = req(
        vec![
            m("__name__", "=", "http_requests_total"),
            m("job", "=~", "a{1001}"),
        ],
        t_ms(0),
        t_ms(POINTS),
    );
    // Prometheus 2.42 answers 500 (not 400) to a bad matcher in remote read, either answer type.
    for ((u, _), want_status) in env.upstreams[..3].iter().zip([500, 500, 400]) {
        let e = u.select(&bad).await.unwrap_err();
        let UpstreamError::Status {
            status,
            message,
            url,
            ..
        } = &e
        else {
            panic!("{}: {e:?}", u.name());
        };
        assert_eq!(*status, want_status, "{e}");
        assert!(
            message.contains("invalid repeat count"),
            "{}: {e}",
            u.name()
        );
        assert!(url.contains("/api/v1/"), "{e}");
    }

    // A server that accepts and never answers: the timeout holds.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let short = Duration::from_millis(300);
    for u in [
        Upstream::Prometheus(RemoteRead::new(
            "slow-prom",
            &silent,
            short,
            client.clone(),
            None,
        )),
        Upstream::VictoriaMetrics(VmExport::new(
            "slow-vm",
            &silent,
            short,
            client.clone(),
            None,
        )),
    ] {
        let started = std::time::Instant::now();
        let e = u.select(&r).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Timeout { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("300ms"), "{e}");
    }
    hold.abort();

    // Size bounds.
    let all = req(vec![m("__name__", "=~", ".+")], 0, i64::MAX / 2);
    for u in [
        Upstream::Prometheus(
            RemoteRead::new("small-prom", &env.prom_url, TIMEOUT, client.clone(), None)
                .with_max_response_bytes(2000),
        ),
        Upstream::Prometheus(
            RemoteRead::new(
                "small-prom-samples",
                &env.prom_url,
                TIMEOUT,
                client.clone(),
                None,
            )
            .with_response_type(ResponseType::Samples)
            .with_max_response_bytes(2000),
        ),
        Upstream::VictoriaMetrics(
            VmExport::new("small-vm", &env.vm_url, TIMEOUT, client.clone(), None)
                .with_max_response_bytes(2000),
        ),
    ] {
        let e = u.select(&all).await.unwrap_err();
        assert!(
            matches!(
                e,
                UpstreamError::TooLarge {
                    limit_bytes: 2000,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Index lookups: series, label names, label values

/// Selector lists for the index lookups: several selectors are ORed, matchers in one ANDed.
fn index_selections() -> Vec<(&'static str, Vec<Vec<Matcher>>)> {
    vec![
        ("every series", vec![]),
        (
            "name",
            vec![vec![m("__name__", "=", "http_requests_total")]],
        ),
        (
            "name regex",
            vec![vec![m("__name__", "=~", "temp.*|late_gauge")]],
        ),
        (
            "external label and more",
            vec![vec![
                m("replica", "=", "a"),
                m("__name__", "=", "http_requests_total"),
                m("code", "!=", "200"),
            ]],
        ),
        (
            "external label by regex",
            vec![vec![m("replica", "=~", "a|b"), m("job", "=", "api")]],
        ),
        ("external label alone", vec![vec![m("replica", "=", "a")]]),
        // Holds everywhere: `a` on Prometheus, absent elsewhere.
        (
            "external label not equal",
            vec![vec![
                m("__name__", "=", "temperature_celsius"),
                m("replica", "!=", "b"),
            ]],
        ),
        ("external label absent", vec![vec![m("replica", "=", "")]]),
        (
            "external label elsewhere",
            vec![vec![m("replica", "=", "b"), m("job", "=", "api")]],
        ),
        (
            "two selectors",
            vec![
                vec![m("__name__", "=", "big_counter_total")],
                vec![m("room", "=", "kitchen")],
                vec![m("replica", "=", "b")],
            ],
        ),
        (
            "escaped label value",
            vec![vec![m("path", "=", "/a \"b\"\\c\nd")]],
        ),
        (
            "empty value means absent",
            vec![vec![m("__name__", "=~", ".+"), m("job", "=", "")]],
        ),
        (
            "nothing matches",
            vec![vec![m("__name__", "=", "no_such_metric")]],
        ),
    ]
}

/// Label names asked for values (`replica` is Prometheus' external label).
const VALUE_NAMES: [&str; 6] = ["__name__", "job", "code", "room", "path", "replica"];

/// What an exact index over `series` (plus `extra` labels on each) answers: the label sets of
/// the series matching any selector (every series for none) with a sample in the window.
fn expected_index(
    series: &[Series],
    extra: &[(&str, &str)],
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> Vec<Labels> {
    let mut out: Vec<Labels> = series
        .iter()
        .filter(|s| s.samples.iter().any(|x| x.t >= start && x.t <= end))
        .map(|s| {
            let mut labels = s.labels.clone();
            for (k, v) in extra {
                labels.set(k, v);
            }
            labels
        })
        .filter(|l| selectors.is_empty() || selectors.iter().any(|s| l.matches(s)))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn names_of(series: &[Labels]) -> Vec<String> {
    let mut out: Vec<String> = series
        .iter()
        .flat_map(|l| l.iter().map(|l| l.name.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn values_of(series: &[Labels], name: &str) -> Vec<String> {
    let mut out: Vec<String> = series
        .iter()
        .filter_map(|l| l.get(name).map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The three answers of one upstream for one selection and window.
async fn index_answers(
    u: &Upstream,
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
    context: &str,
) -> (Vec<Labels>, Vec<String>, Vec<(&'static str, Vec<String>)>) {
    let fail = |e: UpstreamError| -> ! { panic!("{}: {context}: {e}", u.name()) };
    let series = u
        .series(selectors, start, end)
        .await
        .unwrap_or_else(|e| fail(e));
    let names = u
        .label_names(selectors, start, end)
        .await
        .unwrap_or_else(|e| fail(e));
    let mut values = Vec::new();
    for name in VALUE_NAMES {
        let v = u
            .label_values(name, selectors, start, end)
            .await
            .unwrap_or_else(|e| fail(e));
        values.push((name, v));
    }
    (series, names, values)
}

fn is_sorted_unique<T: Ord>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

fn is_subset<T: Ord>(small: &[T], big: &[T]) -> bool {
    small.iter().all(|x| big.binary_search(x).is_ok())
}

/// Over a window holding all the fixture, every upstream's index answers are exactly the
/// fixture's (Prometheus' with its external label): the same series, names and values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lookups_agree_with_the_fixture() {
    let env = env();
    let (start, end) = (t_ms(0) - 3_600_000, t_ms(POINTS) + 3_600_000);
    let mut nonempty = 0;
    for (what, selectors) in index_selections() {
        let mut without_replica: Vec<(String, Vec<Labels>)> = Vec::new();
        for (u, extra) in &env.upstreams {
            let context = format!("{}: {what}", u.name());
            let want = expected_index(&env.series, extra, &selectors, start, end);
            let (series, names, values) = index_answers(u, &selectors, start, end, &context).await;
            assert_eq!(series, want, "{context}: series");
            assert_eq!(names, names_of(&want), "{context}: label names");
            for (name, v) in values {
                assert_eq!(v, values_of(&want, name), "{context}: values of {name}");
            }
            nonempty += usize::from(!want.is_empty());
            without_replica.push((
                u.name().to_string(),
                series.iter().map(|l| l.without(&["replica"])).collect(),
            ));
        }
        // Where the external label is not asked about, all agree once it is stripped.
        if !selectors.iter().flatten().any(|m| m.name == "replica") {
            for (name, s) in &without_replica[1..] {
                assert_eq!(
                    s, &without_replica[0].1,
                    "{what}: {name} vs {}",
                    without_replica[0].0
                );
            }
        }
    }
    assert!(nonempty > 20, "{nonempty}");
    // Every series and every name: the fixture is all there.
    let all = expected_index(&env.series, &[], &[], start, end);
    assert_eq!(all.len(), env.series.len());
    assert!(names_of(&all).len() > 6);
}

/// Narrower windows: the servers answer from their index, by chunk or block (Prometheus) or
/// by day (VictoriaMetrics), so they may name series without a sample in the window, but never
/// miss one that has, nor name one outside the selection. The static files are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lookups_cover_narrow_windows() {
    let env = env();
    let (all_start, all_end) = (t_ms(0) - 3_600_000, t_ms(POINTS) + 3_600_000);
    for (what, selectors) in index_selections() {
        for (window, start, end) in windows() {
            for (u, extra) in &env.upstreams {
                let context = format!("{}: {what} over {window}", u.name());
                let exact = expected_index(&env.series, extra, &selectors, start, end);
                let whole = expected_index(&env.series, extra, &selectors, all_start, all_end);
                let (series, names, values) =
                    index_answers(u, &selectors, start, end, &context).await;
                assert!(is_sorted_unique(&series), "{context}: {series:?}");
                assert!(is_sorted_unique(&names), "{context}: {names:?}");
                if let Upstream::Static(_) = u {
                    assert_eq!(series, exact, "{context}");
                    assert_eq!(names, names_of(&exact), "{context}");
                }
                assert!(is_subset(&exact, &series), "{context}: series missing");
                assert!(is_subset(&series, &whole), "{context}: series {series:?}");
                assert!(is_subset(&names_of(&exact), &names), "{context}: names");
                assert!(is_subset(&names, &names_of(&whole)), "{context}: {names:?}");
                for (name, v) in values {
                    assert!(is_sorted_unique(&v), "{context}: {name}: {v:?}");
                    assert!(is_subset(&values_of(&exact, name), &v), "{context}: {name}");
                    assert!(
                        is_subset(&v, &values_of(&whole, name)),
                        "{context}: {name}: {v:?}"
                    );
                }
            }
        }
    }
}

/// The granularity the servers answer with, as documented in `index_api`: `late_gauge` has
/// samples only in the fixture's second hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_granularity_of_the_servers() {
    let env = env();
    let late = vec![vec![m("__name__", "=", "late_gauge")]];
    let first_half_hour = (t_ms(0), t_ms(120) - 1);
    let (prom, vm, stat) = (
        &env.upstreams[0].0,
        &env.upstreams[2].0,
        &env.upstreams[3].0,
    );
    let (s, e) = first_half_hour;
    // Static files: exact. Prometheus' series: by chunk, and the first chunk of `late_gauge`
    // starts at its first sample.
    assert!(stat.series(&late, s, e).await.unwrap().is_empty());
    assert!(prom.series(&late, s, e).await.unwrap().is_empty());
    // Prometheus' label names: by block (the backfilled block spans both hours).
    assert!(!prom.label_names(&late, s, e).await.unwrap().is_empty());
    // VictoriaMetrics: by day.
    assert_eq!(vm.series(&late, s, e).await.unwrap().len(), 1);
    // A day before the data, VictoriaMetrics finds nothing; two hours before, on the same day,
    // it finds every series.
    let day = 86_400_000;
    assert!(
        vm.series(&[], t_ms(0) - 2 * day, t_ms(0) - day - 1)
            .await
            .unwrap()
            .is_empty()
    );
    let before = (t_ms(0) - 7_200_000, t_ms(0) - 1);
    assert!(
        prom.series(&[], before.0, before.1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        vm.series(&[], before.0, before.1).await.unwrap().len(),
        env.series.len()
    );
}

/// Raw protocol facts the clients rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_endpoints_of_the_servers() {
    let env = env();
    let client = reqwest::Client::new();
    let form = [
        ("match[]", r#"{__name__="http_requests_total"}"#),
        ("start", "1700000000"),
        ("end", "1700007200"),
    ];
    // Prometheus takes label values by GET only; VictoriaMetrics by POST as well.
    let post = |base: &str| {
        client
            .post(format!("{base}/api/v1/label/job/values"))
            .form(&form)
            .send()
    };
    assert_eq!(post(&env.prom_url).await.unwrap().status(), 405);
    assert_eq!(post(&env.vm_url).await.unwrap().status(), 200);
    // With `match[]`, VictoriaMetrics names `__name__` although nothing matches.
    let none = [
        ("match[]", r#"{__name__="no_such_metric"}"#),
        ("start", "1700000000"),
        ("end", "1700007200"),
    ];
    let text = client
        .post(format!("{}/api/v1/labels", env.vm_url))
        .form(&none)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.trim(), r#"{"status":"success","data":["__name__"]}"#);
    // Prometheus' HTTP API knows nothing of its external labels.
    let ext = [
        ("match[]", r#"{replica="a"}"#),
        ("start", "1700000000"),
        ("end", "1700007200"),
    ];
    let text = client
        .post(format!("{}/api/v1/series", env.prom_url))
        .form(&ext)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.trim(), r#"{"status":"success","data":[]}"#);
}

/// Selectors too long for a URL: Prometheus' label values come from its series instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_selectors_for_label_values() {
    let env = env();
    let (start, end) = (t_ms(0), t_ms(POINTS));
    let selectors: Vec<Vec<Matcher>> = (0..300)
        .map(|i| {
            vec![
                m("__name__", "=~", "http_requests_total|big_counter_total"),
                m("code", "!=", &format!("x{i:04}")),
            ]
        })
        .collect();
    for (u, extra) in &env.upstreams {
        let want = expected_index(&env.series, extra, &selectors, start, end);
        for name in ["job", "code", "replica"] {
            let got = u.label_values(name, &selectors, start, end).await.unwrap();
            assert_eq!(got, values_of(&want, name), "{}: {name}", u.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_error_paths() {
    let env = env();
    let client = reqwest::Client::new();
    let (start, end) = (t_ms(0), t_ms(POINTS));
    let sel = vec![vec![m("__name__", "=", "http_requests_total")]];

    // The server's own explanation, not its JSON envelope.
    let bad = vec![vec![
        m("__name__", "=", "http_requests_total"),
        m("job", "=~", "a{1001}"),
    ]];
    for ((u, _), want_status) in env.upstreams[..3].iter().zip([400, 400, 422]) {
        for (what, r) in [
            ("series", u.series(&bad, start, end).await.map(drop)),
            ("labels", u.label_names(&bad, start, end).await.map(drop)),
            (
                "values",
                u.label_values("job", &bad, start, end).await.map(drop),
            ),
        ] {
            let e = r.unwrap_err();
            let UpstreamError::Status {
                status, message, ..
            } = &e
            else {
                panic!("{} {what}: {e:?}", u.name());
            };
            assert_eq!(*status, want_status, "{} {what}: {e}", u.name());
            assert!(
                message.contains("invalid repeat count") && !message.starts_with('{'),
                "{} {what}: {e}",
                u.name()
            );
        }
    }
    // A label name Prometheus cannot hold.
    let e = env.upstreams[0]
        .0
        .label_values("a-b", &sel, start, end)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, UpstreamError::Status { status: 400, message, .. } if message.contains("invalid label name")),
        "{e:?}"
    );
    // A label name no selector can hold is refused before anything is sent.
    let e = env.upstreams[2]
        .0
        .series(&[vec![m("a-b", "=", "x")]], start, end)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::BadSelection { .. }), "{e:?}");

    // Nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    for u in [
        Upstream::Prometheus(
            RemoteRead::new("dead-prom", &dead, TIMEOUT, client.clone(), None)
                .with_external_labels(Labels::default()),
        ),
        Upstream::VictoriaMetrics(VmExport::new(
            "dead-vm",
            &dead,
            TIMEOUT,
            client.clone(),
            None,
        )),
    ] {
        let e = u.label_names(&sel, start, end).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Unreachable { .. }), "{e:?}");
        assert_eq!(
            e.url(),
            Some(format!("{dead}/api/v1/labels").as_str()),
            "{e:?}"
        );
    }

    // A server that never answers: the timeout holds.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let short = Duration::from_millis(300);
    for u in [
        Upstream::Prometheus(RemoteRead::new(
            "slow-prom",
            &silent,
            short,
            client.clone(),
            None,
        )),
        Upstream::VictoriaMetrics(VmExport::new(
            "slow-vm",
            &silent,
            short,
            client.clone(),
            None,
        )),
    ] {
        let started = std::time::Instant::now();
        let e = u.series(&sel, start, end).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Timeout { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    hold.abort();

    // The response cap.
    for u in [
        Upstream::Prometheus(
            RemoteRead::new("small-prom", &env.prom_url, TIMEOUT, client.clone(), None)
                .with_max_response_bytes(300),
        ),
        Upstream::VictoriaMetrics(
            VmExport::new("small-vm", &env.vm_url, TIMEOUT, client.clone(), None)
                .with_max_response_bytes(300),
        ),
    ] {
        let e = u.series(&[], start, end).await.unwrap_err();
        assert!(
            matches!(
                e,
                UpstreamError::TooLarge {
                    limit_bytes: 300,
                    ..
                }
            ),
            "{}: {e:?}",
            u.name()
        );
        // Small answers still pass.
        assert_eq!(
            u.label_values("job", &sel, start, end).await.unwrap(),
            ["api", "web"]
        );
    }

    // An empty window asks nothing.
    for (u, _) in &env.upstreams {
        assert!(u.series(&sel, end, start).await.unwrap().is_empty());
    }
}
