//! Writing a dump: records go to a temporary name as they arrive; only `finish` makes the
//! file appear under its name and writes the manifest beside it, so an interrupted extract
//! never leaves anything that looks like a finished backup.

use std::io::Write;

use serde::Serialize;

use super::error::BackupError;
use super::inventory::{Inventory, InventoryBuilder};
use super::location::Location;
use super::manifest::{Manifest, SourceInfo, manifest_path};
use super::op::Op;
use super::reader::{Format, MAX_RECORD, Record};
use super::writer::RecordWriter;
use crate::fsutil::AtomicFile;

/// What a finished backup holds and where it went.
#[derive(Clone, Debug, Serialize)]
pub struct SinkSummary {
    /// Where the dump was written.
    pub location: String,
    /// The manifest's path, for file destinations.
    pub manifest: Option<String>,
    /// sha256 of the written bytes.
    pub sha256: String,
    /// Bytes written (compressed).
    pub bytes: u64,
    /// What the dump holds.
    pub inventory: Inventory,
}

enum Target {
    File(AtomicFile),
    /// Compressed bytes waiting to be uploaded by the caller (object-store destinations).
    Pending(Vec<u8>),
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Target::File(file) => file.write(buf),
            Target::Pending(buffer) => {
                buffer.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Target::File(file) => file.flush(),
            Target::Pending(_) => Ok(()),
        }
    }
}

/// For object-store destinations: the last compressed bytes and the manifest JSON, which the
/// caller uploads before completing the object.
pub type Remainder = (Vec<u8>, Vec<u8>);

/// A dump being written.
pub struct DumpSink {
    location: Location,
    writer: RecordWriter<Target>,
    inventory: InventoryBuilder,
    source: SourceInfo,
}

impl DumpSink {
    /// Starts writing a dump to `location`.
    pub fn create(location: &Location, source: SourceInfo) -> Result<DumpSink, BackupError> {
        let io_error = |source| BackupError::Io {
            action: "create",
            target: location.display(),
            source,
        };
        let target = match location {
            Location::File(path) => {
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                Target::File(AtomicFile::create(path).map_err(io_error)?)
            }
            Location::Url(_) => Target::Pending(Vec::new()),
            Location::Std => {
                return Err(io_error(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "backups are written to files or object-store URLs",
                )));
            }
        };
        Ok(DumpSink {
            location: location.clone(),
            writer: RecordWriter::new(target),
            inventory: InventoryBuilder::default(),
            source,
        })
    }

    /// Appends one serialized `admin.Op`, checking it is one and that a dump reader (every
    /// restore) will take it: the record limit is the reader's.
    pub fn write_op(&mut self, op_bytes: &[u8]) -> Result<(), BackupError> {
        let record = Record {
            index: self.writer.records(),
            offset: self.writer.raw_bytes(),
            bytes: op_bytes.to_vec(),
        };
        let op = Op::from_record(record)?;
        if op_bytes.len() as u64 > MAX_RECORD {
            return Err(BackupError::TooLarge {
                record: op.index,
                kind: op.kind.as_str(),
                length: op_bytes.len() as u64,
                limit: MAX_RECORD,
            });
        }
        self.inventory.add(&op)?;
        self.writer
            .write_record(op_bytes)
            .map_err(|source| BackupError::Io {
                action: "write",
                target: self.location.display(),
                source,
            })
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.writer.records()
    }

    /// For object-store destinations: the compressed bytes produced since the last call,
    /// for the caller to upload.
    pub fn take_pending(&mut self) -> Vec<u8> {
        match self.writer.destination_mut() {
            Target::Pending(buffer) => std::mem::take(buffer),
            Target::File(_) => Vec::new(),
        }
    }

    /// Completes the dump: flush, sync, rename into place, then write the manifest. For an
    /// object-store destination, the last compressed bytes and the manifest JSON are returned
    /// for the caller to upload (the object is complete only when the caller finishes it).
    pub fn finish(self) -> Result<SinkSummary, BackupError> {
        self.finish_with_remainder().map(|(summary, _)| summary)
    }

    /// [`DumpSink::finish`], also returning (remaining bytes, manifest JSON) for object-store
    /// destinations.
    pub fn finish_with_remainder(self) -> Result<(SinkSummary, Option<Remainder>), BackupError> {
        let location = self.location.display();
        let io_error = |action, source| BackupError::Io {
            action,
            target: location.clone(),
            source,
        };
        let raw_bytes = self.writer.raw_bytes();
        let (sha256, bytes, target) = self
            .writer
            .finish()
            .map_err(|error| io_error("write", error))?;
        let inventory = self.inventory.finish(Format::Snappy, raw_bytes);
        let file_name = match &self.location {
            Location::File(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            other => other
                .display()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        let mut remainder = None;
        let manifest = match (target, &self.location) {
            (Target::Pending(rest), Location::Url(url)) => {
                let manifest = Manifest {
                    manifest_version: 1,
                    file: file_name,
                    sha256: sha256.clone(),
                    bytes,
                    records: inventory.records,
                    versions: inventory.versions.clone(),
                    kinds: inventory.kinds.clone(),
                    source: self.source,
                    created_at: jiff::Timestamp::now().to_string(),
                    ankus_version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                let text = serde_json::to_vec_pretty(&manifest)
                    .map_err(|error| io_error("write", std::io::Error::other(error.to_string())))?;
                remainder = Some((rest, text));
                Some(format!("{url}.manifest.json"))
            }
            (Target::File(file), Location::File(path)) => {
                file.commit().map_err(|error| io_error("write", error))?;
                let manifest = Manifest {
                    manifest_version: 1,
                    file: file_name,
                    sha256: sha256.clone(),
                    bytes,
                    records: inventory.records,
                    versions: inventory.versions.clone(),
                    kinds: inventory.kinds.clone(),
                    source: self.source,
                    created_at: jiff::Timestamp::now().to_string(),
                    ankus_version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                let manifest_file = manifest_path(path);
                let text = serde_json::to_vec_pretty(&manifest)
                    .map_err(|error| io_error("write", std::io::Error::other(error.to_string())))?;
                crate::fsutil::write_atomic(&manifest_file, &text).map_err(|error| {
                    BackupError::Io {
                        action: "write",
                        target: manifest_file.display().to_string(),
                        source: error,
                    }
                })?;
                Some(manifest_file.display().to_string())
            }
            _ => None,
        };
        Ok((
            SinkSummary {
                location,
                manifest,
                sha256,
                bytes,
                inventory,
            },
            remainder,
        ))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::backup::wire::{OpKind, OpVersion, wrap};

    /// pachd hands out ops up to the client's 64 MiB message limit; one above the 20 MiB a
    /// dump reader takes made a backup that no restore could read.
    #[test]
    fn an_op_no_restore_could_read_is_refused_and_no_backup_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.dump");
        let request = crate::proto::pfs::CreateRepoRequest {
            repo: Some(crate::proto::pfs::Repo { name: "a".into() }),
            description: "x".repeat(30 << 20),
            update: false,
        };
        let op = wrap(OpVersion::V1_13, OpKind::Repo, &request.encode_to_vec());
        let mut sink =
            DumpSink::create(&Location::File(path.clone()), SourceInfo::default()).expect("sink");
        let error = sink.write_op(&op).expect_err("too large");
        assert_eq!(
            error.to_string(),
            format!(
                "op 0 (repo) is {} bytes, above the 20971520-byte record limit of a dump",
                op.len()
            )
        );
        drop(sink);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
