//! Reading dumps: pachctl's snappy-framed stream or the bare record stream, sniffed from the
//! first bytes, as `[int64 LE length][admin.Op]` records with bounded memory.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{At, BackupError};

/// pachd's gRPC message limit; no record can be larger. The one limit of a dump: the reader
/// refuses a longer record, and the sink (every extract and script-written dump) refuses to
/// write one, so nothing is written that a restore could not read.
pub const MAX_RECORD: u64 = 20 << 20;

/// The snappy framing format's stream identifier chunk.
pub const SNAPPY_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// How a dump is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Snappy framing around the records (pachctl's output).
    Snappy,
    /// Bare records.
    Raw,
}

impl Format {
    /// `snappy` or `raw`, as in `backup inspect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Snappy => "snappy",
            Format::Raw => "raw",
        }
    }
}

/// One record: its position and the serialized `admin.Op`.
#[derive(Clone, Debug)]
pub struct Record {
    /// 0-based record number.
    pub index: u64,
    /// Offset of the length prefix in the decompressed stream.
    pub offset: u64,
    /// The `admin.Op` bytes.
    pub bytes: Vec<u8>,
}

/// Counts the bytes read through it, shared so errors can report the compressed offset.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// Reads records one at a time from any byte source.
pub struct RecordReader {
    inner: Box<dyn Read + Send>,
    format: Format,
    compressed: Option<Arc<AtomicU64>>,
    index: u64,
    offset: u64,
    done: bool,
}

impl RecordReader {
    /// Sniffs the format from the first bytes of `source` and starts reading.
    pub fn new(source: impl Read + Send + 'static) -> Result<Self, BackupError> {
        let count = Arc::new(AtomicU64::new(0));
        let mut counting = Counting {
            inner: source,
            count: count.clone(),
        };
        let mut head = Vec::with_capacity(SNAPPY_MAGIC.len());
        (&mut counting)
            .take(SNAPPY_MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|source| BackupError::Io {
                action: "read",
                target: "dump".into(),
                source,
            })?;
        let at_start = At {
            record: 0,
            offset: 0,
            compressed: None,
        };
        // A snappy stream opens with the identifier chunk `ff 06 00 00 sNaPpY`. A bare record
        // stream opens with a little-endian length below 20 MiB, so its bytes 2..4 can never be
        // `06 00 00` after a 0xff: the chunk header alone tells the two apart.
        let looks_snappy = head.len() >= 4 && head[..4] == SNAPPY_MAGIC[..4];
        let chained = io::Cursor::new(head.clone()).chain(counting);
        if looks_snappy {
            if head != SNAPPY_MAGIC {
                return Err(BackupError::Corrupt {
                    at: At {
                        compressed: Some(0),
                        ..at_start
                    },
                    message: "wrong snappy stream identifier".into(),
                });
            }
            Ok(RecordReader {
                inner: Box::new(snap::read::FrameDecoder::new(chained)),
                format: Format::Snappy,
                compressed: Some(count),
                index: 0,
                offset: 0,
                done: false,
            })
        } else {
            Ok(RecordReader {
                inner: Box::new(chained),
                format: Format::Raw,
                compressed: None,
                index: 0,
                offset: 0,
                done: false,
            })
        }
    }

    /// The sniffed format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Decompressed bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    fn at(&self) -> At {
        At {
            record: self.index,
            offset: self.offset,
            compressed: self
                .compressed
                .as_ref()
                .map(|count| count.load(Ordering::Relaxed)),
        }
    }

    /// Reads into `buf` until full or end of stream; returns how many bytes were read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, BackupError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let at = self.at();
                    let from_snappy = error
                        .get_ref()
                        .is_some_and(|inner| inner.downcast_ref::<snap::Error>().is_some());
                    if from_snappy {
                        return Err(BackupError::Corrupt {
                            at,
                            message: error.to_string(),
                        });
                    }
                    return Err(match error.kind() {
                        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                            BackupError::Corrupt {
                                at,
                                message: error.to_string(),
                            }
                        }
                        io::ErrorKind::UnexpectedEof => BackupError::Corrupt {
                            at,
                            message: format!("snappy chunk cut short: {error}"),
                        },
                        _ => BackupError::Io {
                            action: "read",
                            target: "dump".into(),
                            source: error,
                        },
                    });
                }
            }
        }
        Ok(filled)
    }

    /// The next record, `None` at a clean end of stream.
    pub fn next_record(&mut self) -> Result<Option<Record>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let mut prefix = [0u8; 8];
        let got = self.fill(&mut prefix)?;
        if got == 0 {
            self.done = true;
            return Ok(None);
        }
        if got < prefix.len() {
            self.done = true;
            return Err(BackupError::Truncated {
                at: self.at(),
                needed: (prefix.len() - got) as u64,
            });
        }
        let length = i64::from_le_bytes(prefix);
        if length < 0 || length as u64 > MAX_RECORD {
            self.done = true;
            return Err(BackupError::BadLength {
                at: self.at(),
                limit: MAX_RECORD,
            });
        }
        // The prefix is trusted up to MAX_RECORD only, so a short stream claiming a huge
        // record costs at most that; within it one exact allocation avoids regrowing (and
        // copying) every multi-MiB block record.
        let wanted = length as usize;
        let mut bytes = vec![0u8; wanted];
        let got = self.fill(&mut bytes)?;
        if got < wanted {
            self.done = true;
            return Err(BackupError::Truncated {
                at: self.at(),
                needed: (wanted - got) as u64,
            });
        }
        let record = Record {
            index: self.index,
            offset: self.offset,
            bytes,
        };
        self.index += 1;
        self.offset += 8 + length as u64;
        Ok(Some(record))
    }
}

impl Iterator for RecordReader {
    type Item = Result<Record, BackupError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
