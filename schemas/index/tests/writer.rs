//! The writer's durability and idempotence, against a real index directory.

#![allow(clippy::unwrap_used)]

use nevermore_index::{IndexDoc, IndexError, LogIndex, Retention, Writer};
use tantivy::collector::Count;
use tantivy::query::AllQuery;

fn doc(sid: u64, seq: u64, ts_ns: i64, id: &str) -> IndexDoc<'_> {
    IndexDoc {
        ts_ns,
        stream_id: sid,
        seq,
        event_id: id,
        message: "hello world",
        level: Some("info"),
        stream: Some("stdout"),
        namespace: Some("shop"),
        pod: Some("api-0"),
        container: Some("api"),
        workload: Some("api"),
        node: "node-a",
        cluster: "c",
        dataset: "container",
        labels: vec![("app", "api")],
        source: b"{}",
    }
}

fn count(index: &LogIndex) -> usize {
    let r = index.index().reader().unwrap();
    r.searcher().search(&AllQuery, &Count).unwrap()
}

fn writer(index: &LogIndex) -> Writer {
    Writer::new(index.clone(), 20_000_000, Retention::default()).unwrap()
}

#[test]
fn replays_after_a_restart_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("{i:016x}")).collect();
    let mut w = writer(&index);
    for i in 0..5 {
        assert!(w.add(&doc(7, i, i as i64, &ids[i as usize])).unwrap());
    }
    w.commit().unwrap();
    drop(w);
    // The collector crashed before its checkpoint: it sends 3..10 again.
    let mut w = writer(&index);
    let added: Vec<bool> = (3..10)
        .map(|i| w.add(&doc(7, i, i as i64, &ids[i as usize])).unwrap())
        .collect();
    assert_eq!(added, [false, false, true, true, true, true, true]);
    // A retried write of the same batch within one writer is skipped too.
    assert!(!w.add(&doc(7, 9, 9, &ids[9])).unwrap());
    w.commit().unwrap();
    assert_eq!(count(&index), 10);
}

#[test]
fn a_lost_checkpoint_does_not_hide_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let mut w = writer(&index);
    for i in 0..5 {
        w.add(&doc(7, i, 0, &format!("old{i}"))).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    // Numbered from 0 again, but different records (other ids): all kept.
    let mut w = writer(&index);
    for i in 0..3 {
        assert!(w.add(&doc(7, i, 0, &format!("new{i}"))).unwrap());
    }
    w.commit().unwrap();
    assert_eq!(count(&index), 8);
}

#[test]
fn uncommitted_records_are_gone_after_rollback_and_can_be_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let mut w = writer(&index);
    w.add(&doc(1, 0, 0, "a")).unwrap();
    w.commit().unwrap();
    w.add(&doc(1, 1, 0, "b")).unwrap();
    w.rollback().unwrap();
    assert!(w.add(&doc(1, 1, 0, "b")).unwrap());
    w.commit().unwrap();
    assert_eq!(count(&index), 2);
}

#[test]
fn one_writer_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let _w = writer(&index);
    let again = LogIndex::open(dir.path()).unwrap();
    let e = Writer::new(again, 20_000_000, Retention::default()).unwrap_err();
    assert!(matches!(e, IndexError::Locked { .. }), "{e}");
}

#[test]
fn other_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    LogIndex::open(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("nevermore-index.json"),
        r#"{"format":"nevermore-embedded-index","version":99}"#,
    )
    .unwrap();
    let e = LogIndex::open(dir.path()).unwrap_err();
    assert!(matches!(e, IndexError::Version { found: 99, .. }), "{e}");
}

#[test]
fn retention_by_age_deletes_older_records() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let retention = Retention {
        max_age_ns: Some(100),
        max_bytes: None,
    };
    let mut w = Writer::new(index.clone(), 20_000_000, retention).unwrap();
    for i in 0..10u64 {
        w.add(&doc(1, i, i as i64 * 50, &format!("{i}"))).unwrap();
    }
    w.commit().unwrap();
    // now = 450: keep ts >= 350, i.e. 350 and 400 and 450.
    let stats = w.enforce_retention(450).unwrap();
    assert_eq!(stats.cutoff_ns, Some(350));
    w.commit().unwrap();
    assert_eq!(count(&index), 3);
}

#[test]
fn retention_by_size_deletes_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let mut w = writer(&index);
    let msg = "x".repeat(2000);
    for i in 0..2000u64 {
        let mut d = doc(1, i, i as i64, "");
        let id = format!("{i}");
        d.event_id = &id;
        d.message = &msg;
        w.add(&d).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let size = index.disk_bytes().unwrap();
    let retention = Retention {
        max_age_ns: None,
        max_bytes: Some(size / 2),
    };
    let mut w = Writer::new(index.clone(), 20_000_000, retention).unwrap();
    let stats = w.enforce_retention(0).unwrap();
    w.commit().unwrap();
    let cutoff = stats.cutoff_ns.unwrap();
    assert!((1000..2000).contains(&cutoff), "cutoff {cutoff}");
    assert_eq!(count(&index), 2000 - cutoff as usize);
}

/// One record from 1970 (a node before its clock synced) must not make size retention delete
/// only that record, call after call.
#[test]
fn retention_by_size_is_not_fooled_by_an_outlier() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path()).unwrap();
    let mut w = writer(&index);
    let msg = "x".repeat(2000);
    let base = 1_795_687_200_000_000_000_i64;
    for i in 0..2001u64 {
        let id = format!("{i}");
        let ts = if i == 0 { 0 } else { base + i as i64 };
        let mut d = doc(1, i, ts, &id);
        d.message = &msg;
        w.add(&d).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let size = index.disk_bytes().unwrap();
    let retention = Retention {
        max_age_ns: None,
        max_bytes: Some(size * 2 / 3),
    };
    let mut w = Writer::new(index.clone(), 20_000_000, retention).unwrap();
    let cutoff = w.enforce_retention(0).unwrap().cutoff_ns.unwrap();
    w.commit().unwrap();
    assert!(cutoff > base, "cutoff {cutoff} deletes only the outlier");
    let left = count(&index);
    assert!((900..1700).contains(&left), "{left} records left");
}
