//! The engine's contract: plan keys, limits, cancellation, error messages, unsupported names.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use nevermore_promql::engine::{self, EngineError, EvalOptions, QueryTime, Value};
use nevermore_promql::model::{
    Labels, MemStorage, Sample, SelectRequest, Series, Storage, StorageError,
};

/// Answers only planned selections and records what evaluation asked for.
struct Strict {
    inner: MemStorage,
    planned: HashSet<String>,
    asked: Mutex<Vec<String>>,
}

impl Storage for Strict {
    fn select(&self, req: &SelectRequest) -> Result<Vec<Arc<Series>>, StorageError> {
        let key = req.key();
        self.asked.lock().expect("lock").push(key.clone());
        if !self.planned.contains(&key) {
            return Err(StorageError::NotPrepared { key });
        }
        self.inner.select(req)
    }
}

fn series(name: &str, labels: &[(&str, &str)], step_ms: i64, values: &[f64]) -> Series {
    let mut pairs: Vec<(String, String)> = vec![("__name__".into(), name.into())];
    pairs.extend(labels.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    Series {
        labels: Labels::from_pairs(pairs),
        samples: values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                t: i as i64 * step_ms,
                v,
            })
            .collect(),
    }
}

fn data() -> MemStorage {
    let ramp: Vec<f64> = (0..100).map(|i| i as f64 * 10.0).collect();
    MemStorage::new(vec![
        series(
            "http_requests_total",
            &[("job", "api"), ("instance", "a")],
            15_000,
            &ramp,
        ),
        series(
            "http_requests_total",
            &[("job", "api"), ("instance", "b")],
            15_000,
            &ramp,
        ),
        series(
            "up",
            &[("job", "api"), ("instance", "a")],
            15_000,
            &[1.0; 100],
        ),
        series(
            "up",
            &[("job", "api"), ("instance", "b")],
            15_000,
            &[1.0; 100],
        ),
        series("build_info", &[("job", "api")], 15_000, &[1.0; 100]),
    ])
}

fn run_planned(
    query: &str,
    time: QueryTime,
    range: bool,
) -> (Result<Value, EngineError>, Vec<String>) {
    let opts = EvalOptions::default();
    let expr = engine::parse(query).expect("parses");
    let plan = engine::plan(&expr, time, &opts).expect("plans");
    let storage = Strict {
        inner: data(),
        planned: plan.iter().map(SelectRequest::key).collect(),
        asked: Mutex::new(Vec::new()),
    };
    let res = if range {
        engine::eval_range(&expr, &storage, time, &opts)
    } else {
        engine::eval_instant(&expr, &storage, time.start, &opts)
    };
    let asked = storage.asked.lock().expect("lock").clone();
    (res.map(|e| e.value), asked)
}

#[test]
fn plan_keys_are_the_keys_evaluation_uses() {
    let queries = [
        "http_requests_total",
        "rate(http_requests_total[5m])",
        "sum by (job) (rate(http_requests_total[5m] offset 1m))",
        "max_over_time(rate(http_requests_total[1m])[10m:30s])",
        "http_requests_total @ 600 - http_requests_total offset 2m",
        "rate(http_requests_total[5m] @ end()) / on(instance) group_left up",
        "last_over_time((up @ start())[5m:1m] offset 30s)",
        "timestamp(up) > 0 and absent(nothing)",
        "max_over_time(avg_over_time(max_over_time(up[1m])[5m:])[10m:2m])",
    ];
    let times = [
        (QueryTime::instant(900_000), false),
        (
            QueryTime {
                start: 600_000,
                end: 1_200_000,
                step: 30_000,
            },
            true,
        ),
    ];
    for q in queries {
        for (time, range) in times {
            let (res, asked) = run_planned(q, time, range);
            assert!(res.is_ok(), "{q}: {res:?}");
            assert!(!asked.is_empty(), "{q}: no selection made");
        }
    }
}

#[test]
fn hints_name_the_function_and_windows_are_left_open() {
    let opts = EvalOptions::default();
    let expr = engine::parse("rate(http_requests_total[5m]) + up").expect("parses");
    let plan = engine::plan(&expr, QueryTime::instant(600_000), &opts).expect("plans");
    assert_eq!(plan.len(), 2);
    let rate = &plan[0];
    assert_eq!(rate.hints.func.as_deref(), Some("rate"));
    assert_eq!(rate.hints.range_ms, 300_000);
    assert_eq!((rate.start, rate.end), (300_001, 600_000));
    let up = &plan[1];
    assert_eq!(up.hints.func, None);
    assert_eq!(
        (up.start, up.end),
        (600_000 - opts.lookback_ms + 1, 600_000)
    );
}

#[test]
fn range_of_a_scalar_is_one_unlabelled_series() {
    let (res, _) = run_planned(
        "1 + 1",
        QueryTime {
            start: 0,
            end: 60_000,
            step: 30_000,
        },
        true,
    );
    let Ok(Value::Matrix(m)) = res else {
        panic!("expected matrix: {res:?}");
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(m[0].samples.len(), 3);
}

#[test]
fn rate_extrapolates_like_prometheus() {
    // 10 per 15 s: 2/3 per second, exactly, whatever the window alignment.
    let (res, _) = run_planned(
        "rate(http_requests_total[5m])",
        QueryTime::instant(900_000),
        false,
    );
    let Ok(Value::Vector(v)) = res else {
        panic!("expected vector: {res:?}");
    };
    assert_eq!(v.len(), 2);
    for e in v {
        assert!((e.v - 10.0 / 15.0).abs() < 1e-9, "{}", e.v);
        assert_eq!(e.labels.metric_name(), None);
    }
}

#[test]
fn cancellation_stops_evaluation() {
    let opts = EvalOptions::default();
    opts.cancel.store(true, Ordering::Relaxed);
    let expr = engine::parse("sum(rate(http_requests_total[5m]))").expect("parses");
    let res = engine::eval_instant(&expr, &data(), 900_000, &opts);
    assert!(matches!(res, Err(EngineError::Cancelled)), "{res:?}");
}

#[test]
fn limits_are_enforced() {
    let expr = engine::parse("http_requests_total").expect("parses");
    let opts = EvalOptions {
        max_series: 1,
        ..EvalOptions::default()
    };
    let res = engine::eval_instant(&expr, &data(), 900_000, &opts);
    assert!(
        matches!(res, Err(EngineError::TooManySeries { limit: 1 })),
        "{res:?}"
    );

    let opts = EvalOptions {
        max_samples: 10,
        ..EvalOptions::default()
    };
    let expr = engine::parse("rate(http_requests_total[10m])").expect("parses");
    let res = engine::eval_instant(&expr, &data(), 900_000, &opts);
    assert!(
        matches!(res, Err(EngineError::TooManySamples { limit: 10 })),
        "{res:?}"
    );
    let time = QueryTime {
        start: 0,
        end: 1_000_000,
        step: 15_000,
    };
    let res = engine::eval_range(&engine::parse("up").expect("parses"), &data(), time, &opts);
    assert!(
        matches!(res, Err(EngineError::TooManySamples { .. })),
        "{res:?}"
    );
}

#[test]
fn ambiguous_matching_uses_prometheus_messages() {
    let opts = EvalOptions::default();
    let eval = |q: &str| {
        let expr = engine::parse(q).expect("parses");
        engine::eval_instant(&expr, &data(), 900_000, &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = eval("build_info * on(job) http_requests_total").expect_err("many-to-many");
    assert_eq!(
        err,
        "found duplicate series for the match group {job=\"api\"} on the right hand-side of the operation: \
         [{__name__=\"http_requests_total\", instance=\"b\", job=\"api\"}, \
         {__name__=\"http_requests_total\", instance=\"a\", job=\"api\"}];\
         many-to-many matching not allowed: matching labels must be unique on one side"
    );
    let err = eval("http_requests_total * on(job) build_info").expect_err("implicit many-to-one");
    assert_eq!(
        err,
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    assert!(eval("http_requests_total * on(job) group_left build_info").is_ok());
    let err = eval("label_replace(up, \"instance\", \"x\", \"\", \"\")").expect_err("collision");
    assert_eq!(err, "vector cannot contain metrics with the same labelset");
}

#[test]
fn unsupported_constructs_are_named() {
    let opts = EvalOptions::default();
    for (q, name) in [
        ("info(up)", "function info"),
        (
            "histogram_count(up)",
            "native histograms (function histogram_count)",
        ),
        ("limitk(1, up)", "limitk"),
        ("limit_ratio(0.5, up)", "limit_ratio"),
    ] {
        let expr = engine::parse(q).expect("parses");
        match engine::plan(&expr, QueryTime::instant(0), &opts) {
            Err(EngineError::Unsupported { construct }) => assert_eq!(construct, name),
            other => panic!("{q}: {other:?}"),
        }
        let res = engine::eval_instant(&expr, &data(), 0, &opts);
        assert!(
            matches!(res, Err(EngineError::Unsupported { .. })),
            "{q}: {res:?}"
        );
    }
    assert!(matches!(
        engine::parse("rate(up[5m] anchored)"),
        Err(EngineError::Unsupported { .. })
    ));
    assert!(matches!(
        engine::parse("up{"),
        Err(EngineError::Parse { .. })
    ));
}
