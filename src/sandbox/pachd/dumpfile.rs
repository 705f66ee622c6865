//! The dump file format as pachctl writes it (snappy framing around `[int64 LE length][Op]`
//! records; the bare record stream is accepted too), for URL-mode extract/restore and seeding.
//!
//! A deliberately small private copy: `src/backup` owns the full reader and writer (manifests,
//! atomic writes, verification); this one only needs to stream records.

use std::io::{self, BufRead, BufReader, Read, Write};

use prost::Message;

use crate::proto::admin;

/// The snappy framing stream identifier.
const SNAPPY_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// The largest record accepted (pachd's message limit, with headroom).
const MAX_RECORD: u64 = 64 << 20;

/// Reads `admin.Op` records from a dump.
pub struct DumpReader {
    inner: Box<dyn Read + Send>,
}

impl DumpReader {
    /// Wraps a byte source, sniffing snappy framing from the first bytes.
    pub fn new<R: Read + Send + 'static>(source: R) -> io::Result<DumpReader> {
        let mut buffered = BufReader::with_capacity(1 << 20, source);
        let head = buffered.fill_buf()?;
        let snappy = head.starts_with(SNAPPY_MAGIC);
        let inner: Box<dyn Read + Send> = if snappy {
            Box::new(snap::read::FrameDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        Ok(DumpReader { inner })
    }

    /// Opens a dump file.
    pub fn open(path: &std::path::Path) -> io::Result<DumpReader> {
        DumpReader::new(std::fs::File::open(path)?)
    }

    /// The next record, or `None` at a clean end of stream.
    pub fn next_op(&mut self) -> io::Result<Option<admin::Op>> {
        let mut len_bytes = [0u8; 8];
        let mut filled = 0;
        while filled < 8 {
            let n = self.inner.read(&mut len_bytes[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "dump ends inside a record length",
                ));
            }
            filled += n;
        }
        let len = i64::from_le_bytes(len_bytes);
        if len < 0 || len as u64 > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("dump record length {len} is out of range"),
            ));
        }
        let mut bytes = vec![0u8; len as usize];
        self.inner.read_exact(&mut bytes)?;
        admin::Op::decode(bytes.as_slice())
            .map(Some)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }
}

/// Writes `admin.Op` records with snappy framing (pachctl's format).
pub struct DumpWriter<W: Write> {
    inner: snap::write::FrameEncoder<W>,
}

impl<W: Write> DumpWriter<W> {
    /// Wraps a byte sink.
    pub fn new(sink: W) -> DumpWriter<W> {
        DumpWriter {
            inner: snap::write::FrameEncoder::new(sink),
        }
    }

    /// Appends one record.
    pub fn write_op(&mut self, op: &admin::Op) -> io::Result<()> {
        let bytes = op.encode_to_vec();
        self.inner.write_all(&(bytes.len() as i64).to_le_bytes())?;
        self.inner.write_all(&bytes)
    }

    /// Flushes and returns the sink.
    pub fn finish(self) -> io::Result<W> {
        self.inner.into_inner().map_err(|err| err.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_both_framings() {
        let op = admin::Op {
            op1_13: Some(admin::Op113 {
                check_auth_token: Some(admin::CheckAuthToken {}),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut writer = DumpWriter::new(Vec::new());
        writer.write_op(&op).unwrap();
        writer.write_op(&op).unwrap();
        let bytes = writer.finish().unwrap();
        let mut reader = DumpReader::new(io::Cursor::new(bytes)).unwrap();
        assert_eq!(reader.next_op().unwrap().unwrap(), op);
        assert!(reader.next_op().unwrap().is_some());
        assert!(reader.next_op().unwrap().is_none());
        let encoded = op.encode_to_vec();
        let mut raw = (encoded.len() as i64).to_le_bytes().to_vec();
        raw.extend(&encoded);
        let mut reader = DumpReader::new(io::Cursor::new(raw)).unwrap();
        assert_eq!(reader.next_op().unwrap().unwrap(), op);
    }
}
