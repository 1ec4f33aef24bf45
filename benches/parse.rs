//! Hot paths of `nevermore-parse`: CRI decode and merger throughput.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nevermore_parse::{LineFormat, Merger, MergerConfig, RawLine, Record, cri};
use std::hint::black_box;
use std::sync::Arc;

/// A ~200-byte CRI line with a logfmt body, typical of a Go service.
fn line(i: usize, tag: &str) -> String {
    format!(
        "2026-11-26T10:00:00.{i:09}Z stdout {tag} ts=2026-11-26T10:00:00Z level=info \
         msg=\"request served\" method=GET path=/api/v1/orders/{i} status=200 \
         duration_ms=12 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
    )
}

fn corpus(n: usize, partial_every: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let tag = match partial_every {
            Some(k) if i % k == 0 => "P",
            _ => "F",
        };
        out.extend_from_slice(line(i, tag).as_bytes());
        out.push(b'\n');
    }
    out
}

fn bench_decode(c: &mut Criterion) {
    let l = line(123_456_789, "F");
    let mut g = c.benchmark_group("cri_decode");
    g.throughput(Throughput::Bytes(l.len() as u64));
    g.bench_function(BenchmarkId::new("line", l.len()), |b| {
        b.iter(|| cri::decode(black_box(l.as_bytes())))
    });
    g.finish();
}

fn bench_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("cri_merge");
    for (name, partial_every) in [("f_only", None), ("one_in_four_partial", Some(4))] {
        let data = corpus(10_000, partial_every);
        let lines: Vec<(usize, usize)> = {
            let mut v = Vec::new();
            let mut pos = 0;
            for l in data.split(|&b| b == b'\n') {
                if !l.is_empty() {
                    v.push((pos, pos + l.len()));
                }
                pos += l.len() + 1;
            }
            v
        };
        let cfg = Arc::new(MergerConfig::new(LineFormat::Cri));
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(BenchmarkId::new("10k_lines", name), |b| {
            let mut out: Vec<Record<u64>> = Vec::with_capacity(lines.len());
            b.iter(|| {
                let mut m = Merger::new(Arc::clone(&cfg));
                out.clear();
                for &(s, e) in &lines {
                    let raw = RawLine {
                        bytes: &data[s..e],
                        start: s as u64,
                        end: e as u64 + 1,
                        cut: false,
                    };
                    m.push(raw, 0, 0, &mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_merge);
criterion_main!(benches);
