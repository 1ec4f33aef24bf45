//! NDJSON to a file (or standard output), one record a line, in delivery order.

use super::{Sink, SinkError};
use crate::event::{Batch, JsonEncoder};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[derive(Debug)]
enum Target {
    /// `file` sink. Reopened when the path stops naming the open file (someone rotated it).
    File {
        path: PathBuf,
        file: Option<File>,
        /// Length before the write in progress; `None` when no write is in progress, so a
        /// rollback never cuts acknowledged data.
        len_before: Option<u64>,
        dev_ino: (u64, u64),
        /// Length at the last successful sync: what a failed flush falls back to.
        durable_len: u64,
    },
    Stdout,
}

#[derive(Debug)]
pub struct FileSink {
    name: String,
    target: Target,
    buf: Vec<u8>,
    encoder: JsonEncoder,
}

impl FileSink {
    pub fn file(name: String, path: PathBuf) -> Self {
        FileSink {
            name,
            target: Target::File {
                path,
                file: None,
                len_before: None,
                dev_ino: (0, 0),
                durable_len: 0,
            },
            buf: Vec::new(),
            encoder: JsonEncoder::default(),
        }
    }

    pub fn stdout(name: String) -> Self {
        FileSink {
            name,
            target: Target::Stdout,
            buf: Vec::new(),
            encoder: JsonEncoder::default(),
        }
    }

    fn err_write(&self, source: std::io::Error) -> SinkError {
        SinkError::Write {
            sink: self.name.clone(),
            source,
        }
    }
}

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    let existed = path.exists();
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    if !existed {
        // A new file must survive a crash too: its directory entry is made durable.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
    }
    repair_torn_tail(&f)?;
    Ok(f)
}

/// A crash in the middle of a write leaves a last line without its newline. That batch was
/// never acknowledged and will be sent again, so the torn bytes are cut off before appending.
fn repair_torn_tail(f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            let keep = start + i as u64 + 1;
            if keep < len {
                f.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    if len > 0 {
        f.set_len(0)?;
    }
    Ok(())
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&mut self, batch: &Batch, accepts: &[bool]) -> Result<usize, SinkError> {
        self.buf.clear();
        let mut n = 0;
        for ev in &batch.events {
            if accepts.get(ev.stream.source).copied().unwrap_or(false) {
                self.encoder.encode(ev, &mut self.buf);
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let name = self.name.clone();
        match &mut self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf)
                    .map_err(|source| SinkError::Write { sink: name, source })?;
            }
            Target::File {
                path,
                file,
                len_before,
                dev_ino,
                durable_len,
            } => {
                // Rotate-safe: if the path now names another file (or none), reopen it.
                let current = std::fs::metadata(&*path).ok().map(|m| (m.dev(), m.ino()));
                if file.is_none() || current != Some(*dev_ino) {
                    let f = open_append(path).map_err(|source| SinkError::Open {
                        sink: name.clone(),
                        path: path.display().to_string(),
                        source,
                    })?;
                    let m = f.metadata().map_err(|source| SinkError::Write {
                        sink: name.clone(),
                        source,
                    })?;
                    // Batches written to the old file are acknowledged only after a sync; if it
                    // fails, the old file stays current and the write is retried.
                    if let Some(old) = file.as_ref() {
                        old.sync_data().map_err(|source| SinkError::Write {
                            sink: name.clone(),
                            source,
                        })?;
                    }
                    // What the new file already holds is made durable once, as the fallback.
                    f.sync_data().map_err(|source| SinkError::Write {
                        sink: name.clone(),
                        source,
                    })?;
                    *durable_len = m.len();
                    *dev_ino = (m.dev(), m.ino());
                    *file = Some(f);
                }
                let Some(f) = file.as_mut() else { return Ok(0) };
                // A rollback that failed earlier is finished before anything new is appended.
                if let Some(len) = *len_before {
                    f.set_len(len).map_err(|source| SinkError::Write {
                        sink: name.clone(),
                        source,
                    })?;
                }
                *len_before = Some(
                    f.metadata()
                        .map_err(|source| SinkError::Write {
                            sink: name.clone(),
                            source,
                        })?
                        .len(),
                );
                f.write_all(&self.buf)
                    .map_err(|source| SinkError::Write { sink: name, source })?;
                *len_before = None;
            }
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        match &mut self.target {
            Target::Stdout => std::io::stdout()
                .lock()
                .flush()
                .map_err(|e| self.err_write(e)),
            Target::File {
                file: Some(f),
                durable_len,
                ..
            } => {
                let name = &self.name;
                let err = |source| SinkError::Write {
                    sink: name.clone(),
                    source,
                };
                f.sync_data().map_err(err)?;
                *durable_len = f.metadata().map_err(err)?.len();
                Ok(())
            }
            Target::File { file: None, .. } => Ok(()),
        }
    }

    async fn discard_unflushed(&mut self) -> Result<(), SinkError> {
        if let Target::File {
            file: Some(f),
            durable_len,
            len_before,
            ..
        } = &mut self.target
        {
            f.set_len(*durable_len).map_err(|e| SinkError::Write {
                sink: self.name.clone(),
                source: e,
            })?;
            *len_before = None;
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), SinkError> {
        if let Target::File {
            file: Some(f),
            len_before,
            ..
        } = &mut self.target
            && let Some(len) = *len_before
        {
            // Cleared only once done: a failed rollback is tried again before the next write.
            f.set_len(len).map_err(|e| SinkError::Write {
                sink: self.name.clone(),
                source: e,
            })?;
            *len_before = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn batch(id: u64, messages: &[&str]) -> Batch {
        use crate::event::{Event, SegmentPath, StreamInfo};
        let info = std::sync::Arc::new(StreamInfo::new(
            0,
            "k".into(),
            None,
            "c".into(),
            "n".into(),
            "d".into(),
        ));
        let path = std::sync::Arc::new(SegmentPath::new("p".into()));
        Batch {
            id,
            events: messages
                .iter()
                .enumerate()
                .map(|(i, m)| Event {
                    stream: info.clone(),
                    path: path.clone(),
                    timestamp_ns: 0,
                    std: None,
                    message: (*m).to_owned(),
                    level: None,
                    flags: Default::default(),
                    offset: i as u64,
                    sequence: i as u64,
                    id: i as u64,
                })
                .collect(),
            marks: Vec::new(),
            bytes: 0,
        }
    }

    #[tokio::test]
    async fn a_failed_flush_falls_back_to_the_last_durable_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut sink = FileSink::file("s".into(), path.clone());
        sink.write(&batch(1, &["one"]), &[true]).await.unwrap();
        sink.flush().await.unwrap();
        let durable = std::fs::read(&path).unwrap();
        sink.write(&batch(2, &["two", "three"]), &[true])
            .await
            .unwrap();
        assert!(std::fs::read(&path).unwrap().len() > durable.len());
        sink.discard_unflushed().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), durable);
        // And writing again after the discard appends cleanly.
        sink.write(&batch(2, &["two"]), &[true]).await.unwrap();
        sink.flush().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let mut f = open_append(&path).unwrap();
        f.write_all(b"{\"d\":4}\n").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"a\":1}\n{\"b\":2}\n{\"d\":4}\n"
        );
        // No newline at all: nothing complete to keep.
        std::fs::write(&path, b"torn").unwrap();
        drop(open_append(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        // A clean file is left alone.
        std::fs::write(&path, b"x\n").unwrap();
        drop(open_append(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
    }
}
