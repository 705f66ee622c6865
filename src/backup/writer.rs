//! Writing dumps in pachctl's format: snappy framing around `[int64 LE length][admin.Op]`
//! records, counted and hashed as they go so the manifest can describe the result.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// Hashes and counts what passes through to the inner writer.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex sha256 and byte count so far, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex::encode(self.hasher.finalize()), self.bytes, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes records in pachctl's snappy-framed format.
pub struct RecordWriter<W: Write> {
    encoder: snap::write::FrameEncoder<HashingWriter<W>>,
    records: u64,
    raw_bytes: u64,
}

impl<W: Write> RecordWriter<W> {
    /// Starts a dump on `inner`.
    pub fn new(inner: W) -> Self {
        RecordWriter {
            encoder: snap::write::FrameEncoder::new(HashingWriter::new(inner)),
            records: 0,
            raw_bytes: 0,
        }
    }

    /// Appends one serialized `admin.Op`.
    pub fn write_record(&mut self, op_bytes: &[u8]) -> io::Result<()> {
        self.encoder
            .write_all(&(op_bytes.len() as i64).to_le_bytes())?;
        self.encoder.write_all(op_bytes)?;
        self.records += 1;
        self.raw_bytes += 8 + op_bytes.len() as u64;
        Ok(())
    }

    /// The destination, for draining buffered output (the snappy encoder keeps at most one
    /// chunk of its own).
    pub fn destination_mut(&mut self) -> &mut W {
        &mut self.encoder.get_mut().inner
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes the last chunk; returns (sha256 hex, compressed bytes, inner writer).
    pub fn finish(self) -> io::Result<(String, u64, W)> {
        let hashing = self
            .encoder
            .into_inner()
            .map_err(|error| io::Error::other(error.to_string()))?;
        Ok(hashing.finish())
    }

    /// Decompressed bytes written so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::reader::{Format, RecordReader};

    #[test]
    fn written_records_read_back_in_order() {
        let mut writer = RecordWriter::new(Vec::new());
        writer.write_record(b"\x2a\x00").expect("write");
        writer.write_record(b"").expect("write");
        let (sha, bytes, buffer) = writer.finish().expect("finish");
        assert_eq!(bytes as usize, buffer.len());
        assert_eq!(sha.len(), 64);
        let mut reader = RecordReader::new(std::io::Cursor::new(buffer)).expect("reader");
        assert_eq!(reader.format(), Format::Snappy);
        let first = reader.next_record().expect("ok").expect("some");
        assert_eq!(first.bytes, b"\x2a\x00");
        let second = reader.next_record().expect("ok").expect("some");
        assert_eq!((second.index, second.offset), (1, 10));
        assert!(reader.next_record().expect("ok").is_none());
    }

    #[test]
    fn huge_and_negative_length_prefixes_fail_before_allocating() {
        for length in [1i64 << 62, -5] {
            let mut raw = length.to_le_bytes().to_vec();
            raw.extend_from_slice(b"xx");
            let mut reader = RecordReader::new(std::io::Cursor::new(raw)).expect("reader");
            let error = reader.next_record().expect_err("bad length");
            let text = error.to_string();
            assert!(text.contains("invalid length prefix"), "{text}");
            assert!(text.contains("record 0 at byte offset 0"), "{text}");
        }
    }

    #[test]
    fn truncation_names_the_record_and_missing_bytes() {
        let mut raw = 10i64.to_le_bytes().to_vec();
        raw.extend_from_slice(b"abc");
        let mut reader = RecordReader::new(std::io::Cursor::new(raw)).expect("reader");
        let text = reader.next_record().expect_err("short").to_string();
        assert_eq!(
            text,
            "dump is truncated: record 0 at byte offset 0 needs 7 more byte(s)"
        );
    }
}
