//! The message column: every record's message in doc-id order, one file per segment
//! (`<segment>.msg`), written and merged with the segment by a tantivy segment plugin.
//!
//! Grep-like search (a regex or glob anywhere in the line) checks candidates against their
//! message. The doc store holds the whole record, compressed in blocks, so checking one
//! candidate there means decompressing ten times its message; here a message is a slice of a
//! memory-mapped file. Uncompressed on purpose: this file trades disk (about a fifth of the
//! index) for the speed of the one query the inverted index cannot answer.
//!
//! Format (version 1), little-endian: the messages back to back; `n + 1` offsets (u64) into
//! them, the first 0 and the last their total length; then `n` (u64), the version (u32) and
//! the magic `NVMS`. A file that does not add up is refused as a whole.

use std::any::Any;
use std::io::Write;

use tantivy::directory::{OwnedBytes, TerminatingWrite};
use tantivy::index::{SegmentComponent, SegmentReader};
use tantivy::indexer::doc_id_mapping::MappingType;
use tantivy::plugin::{PluginMergeContext, PluginWriter, PluginWriterContext, SegmentPlugin};
use tantivy::schema::document::ErasedDocument;
use tantivy::schema::{Field, Schema, Value};
use tantivy::{DocId, Segment, TantivyDocument, TantivyError};

/// The segment file's extension.
pub const EXTENSION: &str = "msg";
const VERSION: u32 = 1;
const MAGIC: &[u8; 4] = b"NVMS";
/// `n`, version, magic.
const FOOTER: usize = 8 + 4 + 4;

fn component() -> SegmentComponent {
    SegmentComponent::Custom(EXTENSION.to_string())
}

/// Writes and merges the message column of the `message` field.
#[derive(Debug)]
pub struct MessagePlugin {
    pub message: Field,
}

impl SegmentPlugin for MessagePlugin {
    fn extensions(&self) -> &[&str] {
        &[EXTENSION]
    }

    fn create_writer(&self, _: &PluginWriterContext) -> tantivy::Result<Box<dyn PluginWriter>> {
        Ok(Box::new(MessageWriter {
            field: self.message,
            column: Column::default(),
        }))
    }

    fn merge(&self, ctx: PluginMergeContext) -> tantivy::Result<()> {
        // Without index sorting (never configured here) a merge stacks the segments in order,
        // leaving out deleted records: the same walk as tantivy's own components.
        if ctx.doc_id_mapping.mapping_type() == MappingType::Shuffled {
            return Err(TantivyError::InvalidArgument(
                "the message column cannot follow a sorted index's merge".into(),
            ));
        }
        // Streamed: only the offsets (8 bytes a record) are held, never the messages.
        let mut w = ctx.target_segment.open_write(component())?;
        let mut offsets = vec![0u64];
        let mut at = 0u64;
        for reader in ctx.readers {
            let source = MessageColumn::open(reader)?;
            for doc in reader.doc_ids_alive() {
                let message = source.get(doc).ok_or_else(|| {
                    TantivyError::InternalError(format!(
                        "message column of segment {}: no record {doc}",
                        reader.segment_id().uuid_string()
                    ))
                })?;
                w.write_all(message)?;
                at += message.len() as u64;
                offsets.push(at);
            }
        }
        write_footer(&mut w, &offsets)?;
        w.terminate()?;
        Ok(())
    }
}

struct MessageWriter {
    field: Field,
    column: Column,
}

impl PluginWriter for MessageWriter {
    fn add_document(
        &mut self,
        doc_id: DocId,
        doc: &dyn ErasedDocument,
        _: &Schema,
    ) -> tantivy::Result<()> {
        if doc_id as usize != self.column.len() {
            return Err(TantivyError::InvalidArgument(format!(
                "message column: document {doc_id} out of order"
            )));
        }
        let doc = doc
            .as_any()
            .downcast_ref::<TantivyDocument>()
            .ok_or_else(|| {
                TantivyError::InvalidArgument("message column: not a TantivyDocument".into())
            })?;
        let message = doc.get_first(self.field).and_then(|v| v.as_str());
        self.column.push(message.unwrap_or_default().as_bytes());
        Ok(())
    }

    fn serialize(
        self: Box<Self>,
        segment: &Segment,
        doc_id_map: Option<&tantivy::indexer::doc_id_mapping::DocIdMapping>,
    ) -> tantivy::Result<()> {
        if doc_id_map.is_some() {
            return Err(TantivyError::InvalidArgument(
                "the message column cannot follow a sorted index".into(),
            ));
        }
        self.column.write(segment)
    }

    fn mem_usage(&self) -> usize {
        self.column.bytes.capacity() + self.column.offsets.capacity() * 8
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A column being built.
struct Column {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

impl Default for Column {
    fn default() -> Self {
        Column {
            bytes: Vec::new(),
            offsets: vec![0],
        }
    }
}

impl Column {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn push(&mut self, message: &[u8]) {
        self.bytes.extend_from_slice(message);
        self.offsets.push(self.bytes.len() as u64);
    }

    fn write(self, segment: &Segment) -> tantivy::Result<()> {
        let mut w = segment.open_write(component())?;
        w.write_all(&self.bytes)?;
        write_footer(&mut w, &self.offsets)?;
        w.terminate()?;
        Ok(())
    }
}

/// The offsets (the first 0, the last the messages' total length), the count, the version and
/// the magic.
fn write_footer(w: &mut impl Write, offsets: &[u64]) -> std::io::Result<()> {
    let mut buf = std::io::BufWriter::new(w);
    for o in offsets {
        buf.write_all(&o.to_le_bytes())?;
    }
    buf.write_all(&(offsets.len() as u64 - 1).to_le_bytes())?;
    buf.write_all(&VERSION.to_le_bytes())?;
    buf.write_all(MAGIC)?;
    buf.flush()
}

/// One segment's messages, read in place from the memory-mapped file.
#[derive(Clone)]
pub struct MessageColumn {
    file: OwnedBytes,
    /// Where the offsets start (= the messages' total length).
    offsets_at: usize,
    n: usize,
}

impl std::fmt::Debug for MessageColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageColumn").field("n", &self.n).finish()
    }
}

impl MessageColumn {
    pub fn open(reader: &SegmentReader) -> tantivy::Result<MessageColumn> {
        let file = reader.open_read(component())?.read_bytes()?;
        let max_doc = reader.max_doc() as usize;
        MessageColumn::parse(file)
            .and_then(|col| match col.n {
                n if n == max_doc => Ok(col),
                n => Err(format!("{n} records, the segment has {max_doc}")),
            })
            .map_err(|why| {
                TantivyError::InternalError(format!(
                    "segment {}: message column: {why}",
                    reader.segment_id().uuid_string()
                ))
            })
    }

    fn parse(file: OwnedBytes) -> Result<MessageColumn, String> {
        let bytes = file.as_slice();
        let footer = bytes
            .len()
            .checked_sub(FOOTER)
            .and_then(|at| bytes.get(at..))
            .ok_or("shorter than its footer")?;
        let (n, rest) = footer.split_at(8);
        let (version, magic) = rest.split_at(4);
        if magic != MAGIC {
            return Err("bad magic".into());
        }
        let version = u32::from_le_bytes(version.try_into().map_err(|_| "footer")?);
        if version != VERSION {
            return Err(format!("version {version}, this build reads {VERSION}"));
        }
        let n = usize::try_from(u64::from_le_bytes(n.try_into().map_err(|_| "footer")?))
            .map_err(|_| "too many records")?;
        let offsets_len = n
            .checked_add(1)
            .and_then(|k| k.checked_mul(8))
            .ok_or("too many records")?;
        let offsets_at = (bytes.len() - FOOTER)
            .checked_sub(offsets_len)
            .ok_or("offsets missing")?;
        let col = MessageColumn {
            file,
            offsets_at,
            n,
        };
        if col.offset(0) != Some(0) || col.offset(n) != Some(offsets_at as u64) {
            return Err("offsets do not add up".into());
        }
        Ok(col)
    }

    fn offset(&self, i: usize) -> Option<u64> {
        let at = self.offsets_at + i * 8;
        let b = self.file.as_slice().get(at..at + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// The message of `doc`; `None` past the end or where the offsets are inconsistent.
    pub fn get(&self, doc: DocId) -> Option<&[u8]> {
        let i = doc as usize;
        if i >= self.n {
            return None;
        }
        let (start, end) = (self.offset(i)?, self.offset(i + 1)?);
        let range = usize::try_from(start).ok()?..usize::try_from(end).ok()?;
        if range.end > self.offsets_at {
            return None;
        }
        self.file.as_slice().get(range)
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(messages: &[&str]) -> OwnedBytes {
        let mut c = Column::default();
        let mut out = Vec::new();
        for m in messages {
            c.push(str::as_bytes(m));
        }
        out.extend_from_slice(&c.bytes);
        write_footer(&mut out, &c.offsets).unwrap();
        OwnedBytes::new(out)
    }

    #[test]
    fn messages_come_back_by_doc_id() {
        let col = MessageColumn::parse(encoded(&["a", "", "héllo"])).unwrap();
        assert_eq!(col.len(), 3);
        assert_eq!(col.get(0), Some(b"a".as_slice()));
        assert_eq!(col.get(1), Some(b"".as_slice()));
        assert_eq!(col.get(2), Some("héllo".as_bytes()));
        assert_eq!(col.get(3), None);
        assert!(MessageColumn::parse(encoded(&[])).unwrap().is_empty());
    }

    /// Through tantivy: flushed segments, then a merge that leaves deleted records out.
    #[test]
    fn the_column_follows_segments_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let li = crate::LogIndex::open(dir.path()).unwrap();
        let (index, f) = (li.index(), *li.fields());
        let mut w: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for commit in 0..3u64 {
            for i in 0..50u64 {
                let n = commit * 50 + i;
                let mut d = TantivyDocument::default();
                d.add_text(f.message, format!("line {n} ünïcode"));
                d.add_u64(f.seq, n);
                d.add_text(f.id, n.to_string());
                w.add_document(d).unwrap();
            }
            w.commit().unwrap();
        }
        let check = |want: &dyn Fn(u64) -> bool, segments: usize| {
            let reader = index.reader().unwrap();
            let searcher = reader.searcher();
            assert_eq!(searcher.segment_readers().len(), segments);
            let mut seen = 0;
            for seg in searcher.segment_readers() {
                let col = MessageColumn::open(seg).unwrap();
                assert_eq!(col.len(), seg.max_doc() as usize);
                let seqs = seg.fast_fields().u64("seq").unwrap();
                for doc in seg.doc_ids_alive() {
                    let n = seqs.first(doc).unwrap();
                    assert!(want(n));
                    let msg = format!("line {n} ünïcode");
                    assert_eq!(col.get(doc), Some(msg.as_bytes()));
                    seen += 1;
                }
            }
            assert_eq!(seen, (0..150).filter(|n| want(*n)).count());
        };
        check(&|_| true, 3);
        for n in (0..150u64).filter(|n| n % 7 == 0) {
            w.delete_term(tantivy::Term::from_field_text(f.id, &n.to_string()));
        }
        w.commit().unwrap();
        let ids = index.searchable_segment_ids().unwrap();
        w.merge(&ids).wait().unwrap();
        w.wait_merging_threads().unwrap();
        check(&|n| n % 7 != 0, 1);
    }

    /// Version 1 as it is on disk (`UPDATE_GOLDEN=1` rewrites it): a change of the encoding
    /// shows here, and a file of this version stays readable.
    #[test]
    fn the_format_matches_its_golden_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/index/messages-v1.msg");
        let got = encoded(&["a", "", "héllo"]).as_slice().to_vec();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read(&path).unwrap();
        assert_eq!(got, want, "{} differs", path.display());
        let col = MessageColumn::parse(OwnedBytes::new(want)).unwrap();
        assert_eq!(col.get(2), Some("héllo".as_bytes()));
    }

    #[test]
    fn damaged_files_are_refused_not_misread() {
        let good = encoded(&["one", "two"]).as_slice().to_vec();
        for cut in 0..good.len() {
            let r = MessageColumn::parse(OwnedBytes::new(good[cut..].to_vec()));
            assert!(cut == 0 || r.is_err(), "cut {cut}");
            let r = MessageColumn::parse(OwnedBytes::new(good[..cut].to_vec()));
            assert!(r.is_err(), "truncated at {cut}");
        }
        let mut bad_version = good.clone();
        let at = bad_version.len() - 8;
        bad_version[at] = 9;
        assert!(MessageColumn::parse(OwnedBytes::new(bad_version)).is_err());
    }
}
