//! File identity beyond (device, inode): a checksum of the first line, and of the bytes before a
//! checkpointed offset.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Bytes of the head that make a fingerprint: the first line, capped here.
pub const FINGERPRINT_MAX: usize = 4096;
/// Bytes before a checkpointed offset that are hashed to validate it at restart.
pub const BEFORE_WINDOW: u64 = 256;

pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The fingerprint of a head of a file: the hash of its first line (with its newline), or of
/// the first `FINGERPRINT_MAX` bytes. `None` while the first line is incomplete and the file may
/// still grow (`complete` false).
pub fn of_head(head: &[u8], complete: bool) -> Option<u64> {
    match memchr::memchr(b'\n', head) {
        Some(nl) => Some(hash(&head[..=nl])),
        None if head.len() >= FINGERPRINT_MAX => Some(hash(&head[..FINGERPRINT_MAX])),
        None if complete => Some(hash(head)),
        None => None,
    }
}

/// Fingerprint of a plain file through an open descriptor.
pub fn of_file(file: &File, complete: bool) -> io::Result<Option<u64>> {
    let mut head = vec![0u8; FINGERPRINT_MAX];
    let n = read_full_at(file, &mut head, 0)?;
    Ok(of_head(&head[..n], complete))
}

/// Fingerprint of a gzip segment (of its decompressed bytes). A gzip segment is final.
/// Reads through positioned reads: the descriptor's offset is left untouched.
pub fn of_gz(file: &File) -> io::Result<Option<u64>> {
    let mut dec = MultiGzDecoder::new(PositionedReader { file, at: 0 });
    let mut head = Vec::with_capacity(FINGERPRINT_MAX);
    (&mut dec)
        .take(FINGERPRINT_MAX as u64)
        .read_to_end(&mut head)?;
    Ok(of_head(&head, true))
}

/// `Read` over `pread`, so a shared descriptor's offset never moves.
struct PositionedReader<'a> {
    file: &'a File,
    at: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Hash of the `BEFORE_WINDOW` bytes before `offset` (0 at offset 0).
pub fn before(file: &File, offset: u64) -> io::Result<u64> {
    let start = offset.saturating_sub(BEFORE_WINDOW);
    let mut buf = vec![0u8; (offset - start) as usize];
    let n = read_full_at(file, &mut buf, start)?;
    if n < buf.len() {
        // The file is shorter than the offset: cannot be the same bytes.
        return Ok(u64::MAX);
    }
    Ok(if buf.is_empty() { 0 } else { hash(&buf) })
}

fn read_full_at(file: &File, buf: &mut [u8], mut at: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], at) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn head_fingerprints() {
        assert_eq!(of_head(b"", false), None);
        assert_eq!(of_head(b"", true), Some(hash(b"")));
        assert_eq!(of_head(b"abc", false), None);
        assert_eq!(of_head(b"abc", true), Some(hash(b"abc")));
        assert_eq!(of_head(b"abc\ndef", false), Some(hash(b"abc\n")));
        // Growing a file after its first line does not change the fingerprint.
        assert_eq!(of_head(b"abc\ndef\nghi", false), of_head(b"abc\n", false));
        let long = vec![b'x'; FINGERPRINT_MAX + 10];
        assert_eq!(of_head(&long, false), Some(hash(&long[..FINGERPRINT_MAX])));
    }

    #[test]
    fn gz_matches_plain() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a");
        std::fs::write(&plain, b"first line\nsecond\n").unwrap();
        let gz = dir.path().join("a.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"first line\nsecond\n").unwrap();
        enc.finish().unwrap();
        let p = of_file(&File::open(&plain).unwrap(), false).unwrap();
        let g = of_gz(&File::open(&gz).unwrap()).unwrap();
        assert_eq!(p, g);
        assert!(p.is_some());
    }
}
