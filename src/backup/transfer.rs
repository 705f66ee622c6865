//! Moving dumps between pachd and storage: extract a cluster into a dump (with its manifest),
//! and restore a dump into a cluster only after the whole source has been verified.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::error::BackupError;
use super::location::Location;
use super::manifest::SourceInfo;
use super::reader::RecordReader;
use super::sink::{DumpSink, SinkSummary};
use super::verify::{VerifyReport, verify};
use crate::kind::{Kind, Kinded};
use crate::pachd::{ExtractFlags, PachdClient, PachdError};

/// What can go wrong moving a dump.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// pachd failed part-way through an extract; nothing was written under the dump's name.
    #[error("extract failed after {ops} op(s) ({bytes} bytes); no backup was written")]
    Extract {
        /// Ops received before the failure.
        ops: u64,
        /// Bytes received.
        bytes: u64,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The source failed verification; nothing was sent to pachd.
    #[error("{location} failed verification; no op was sent to pachd")]
    Unverified {
        /// The source.
        location: String,
        /// Why.
        #[source]
        source: BackupError,
    },
    /// pachd failed part-way through a restore.
    #[error(
        "restore failed after sending {sent} of {total} op(s) (the last sent: {last}); the target may hold a partial restore"
    )]
    Restore {
        /// Ops sent before the failure.
        sent: u64,
        /// Ops in the dump.
        total: u64,
        /// The last op sent, `record N kind name`.
        last: String,
        /// The cause.
        #[source]
        source: PachdError,
    },
    /// A local problem (spooling stdin, opening the dump).
    #[error(transparent)]
    Backup(#[from] BackupError),
}

impl Kinded for TransferError {
    fn kind(&self) -> Kind {
        match self {
            TransferError::Extract { .. } => Kind::Failed,
            TransferError::Unverified { .. } => Kind::Invalid,
            TransferError::Restore { source, .. } => source.kind(),
            TransferError::Backup(error) => error.kind(),
        }
    }
}

/// Counters a caller can watch while a transfer runs (for progress display).
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Ops moved so far.
    pub ops: Arc<AtomicU64>,
    /// Op bytes moved so far.
    pub bytes: Arc<AtomicU64>,
}

/// Extracts `client` into a dump at `target`. The dump appears under its name, with its
/// manifest, only when the whole stream has arrived.
pub async fn extract_to(
    client: &PachdClient,
    flags: &ExtractFlags,
    target: &Location,
    source: SourceInfo,
    progress: &Progress,
) -> Result<SinkSummary, TransferError> {
    let failed = |error: Box<dyn std::error::Error + Send + Sync>| TransferError::Extract {
        ops: progress.ops.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        source: error,
    };
    let mut sink = DumpSink::create(target, source)?;
    let mut stream = client
        .extract(flags)
        .await
        .map_err(|error| failed(Box::new(error)))?;
    while let Some(item) = stream.next().await {
        let op = item.map_err(|error| failed(Box::new(error)))?;
        sink.write_op(&op)
            .map_err(|error| failed(Box::new(error)))?;
        progress.ops.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(op.len() as u64, Ordering::Relaxed);
    }
    sink.finish().map_err(|error| failed(Box::new(error)))
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The verification that ran before anything was sent.
    pub verified: VerifyReport,
    /// Ops sent.
    pub ops: u64,
}

/// A dump made readable twice: stdin is spooled to a temporary file first, so it can be
/// verified completely before it is sent.
pub struct Replayable {
    location: Location,
    _spool: Option<tempfile::TempPath>,
}

impl Replayable {
    /// Prepares `location` for a verify pass and a send pass.
    pub fn new(location: &Location) -> Result<Replayable, BackupError> {
        if *location != Location::Std {
            return Ok(Replayable {
                location: location.clone(),
                _spool: None,
            });
        }
        let io_error = |source| BackupError::Io {
            action: "spool",
            target: "stdin".into(),
            source,
        };
        let mut spool = tempfile::NamedTempFile::new().map_err(io_error)?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool).map_err(io_error)?;
        let path = spool.into_temp_path();
        Ok(Replayable {
            location: Location::File(path.to_path_buf()),
            _spool: Some(path),
        })
    }

    /// The location to read.
    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// Verifies the dump at `location` completely (framing, checksums, relations, manifest), then
/// streams it into `client`. No op is sent when verification fails.
pub async fn restore_from(
    client: &PachdClient,
    location: &Location,
    progress: &Progress,
) -> Result<RestoreSummary, TransferError> {
    let source = Replayable::new(location)?;
    let readable = source.location().clone();
    let checked = tokio::task::spawn_blocking(move || verify(&readable))
        .await
        .map_err(|error| {
            TransferError::Backup(BackupError::Io {
                action: "verify",
                target: location.display(),
                source: std::io::Error::other(error.to_string()),
            })
        })?
        .map_err(|error| TransferError::Unverified {
            location: location.display(),
            source: error,
        })?;
    let total = checked.inventory.records;
    let last = Arc::new(std::sync::Mutex::new(String::from("none")));

    // Records are read on a plain thread and handed over through a small channel, so memory
    // stays bounded by the channel, whatever the dump's size. Block records are up to 10 MiB,
    // so only a few wait in it.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, BackupError>>(4);
    let reader_location = source.location().clone();
    let reader_last = last.clone();
    let reader = std::thread::Builder::new()
        .name("ankus-restore-reader".into())
        .spawn(move || {
            let records = reader_location.open().and_then(RecordReader::new);
            let mut records = match records {
                Ok(records) => records,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            loop {
                match records.next_record() {
                    Ok(Some(record)) => {
                        // The op keeps the record's bytes, so they are not copied again.
                        let op = match super::op::Op::from_record(record) {
                            Ok(op) => op,
                            Err(error) => {
                                let _ = sender.blocking_send(Err(error));
                                return;
                            }
                        };
                        if let Ok(mut slot) = reader_last.lock() {
                            *slot =
                                format!("record {} {} {}", op.index, op.kind.as_str(), op.name());
                        }
                        if sender
                            .blocking_send(Ok(Bytes::from_owner(op.bytes)))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error));
                        return;
                    }
                }
            }
        })
        .map_err(|error| BackupError::Io {
            action: "read",
            target: location.display(),
            source: error,
        })?;
    let counter = progress.clone();
    let ops = tokio_stream::wrappers::ReceiverStream::new(receiver).inspect(move |item| {
        if let Ok(op) = item {
            counter.ops.fetch_add(1, Ordering::Relaxed);
            counter.bytes.fetch_add(op.len() as u64, Ordering::Relaxed);
        }
    });
    let outcome = client.restore(ops).await;
    // The reader stops by itself once the channel is closed.
    let _ = reader.join();
    let sent = progress.ops.load(Ordering::Relaxed);
    match outcome {
        Ok(()) => Ok(RestoreSummary {
            verified: checked,
            ops: sent,
        }),
        Err(error) => Err(TransferError::Restore {
            sent,
            total,
            last: last.lock().map(|slot| slot.clone()).unwrap_or_default(),
            source: error,
        }),
    }
}
