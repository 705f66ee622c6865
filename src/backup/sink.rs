//! Writing a dump: records go to a temporary name as they arrive; only `finish` makes the
//! file appear under its name and writes the manifest beside it, so an interrupted extract
//! never leaves anything that looks like a finished backup.

use std::io::Write;

use serde::Serialize;

use super::error::BackupError;
use super::inventory::{Inventory, InventoryBuilder};
use super::location::Location;
use super::manifest::{MANIFEST_VERSION, Manifest, SourceInfo, manifest_location, manifest_path};
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
        // A `file://` dump is a local file like any other: written under a temporary name
        // with mode 0600 and renamed into place (object_store's local files are 0644).
        let target = match (location.local_path(), location) {
            (Some(path), _) => {
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                Target::File(AtomicFile::create(&path).map_err(io_error)?)
            }
            (None, Location::Url(_)) => Target::Pending(Vec::new()),
            (None, _) => {
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
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            file: self.location.file_name(),
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
        let manifest_shown = manifest_location(&self.location).map(|at| at.display());
        let remainder = match (target, self.location.local_path()) {
            (Target::Pending(rest), _) => Some((rest, text)),
            (Target::File(file), Some(path)) => {
                let manifest_file = manifest_path(&path);
                commit_with_manifest(file, &path, &manifest_file, &text, |file, bytes| {
                    file.write_all(bytes)
                })?;
                None
            }
            (Target::File(_), None) => {
                return Err(io_error(
                    "write",
                    std::io::Error::other("a file destination without a path"),
                ));
            }
        };
        Ok((
            SinkSummary {
                location,
                manifest: manifest_shown,
                sha256,
                bytes,
                inventory,
            },
            remainder,
        ))
    }
}

/// The object-store side of a dump being written to a URL that is not a local file: the
/// compressed bytes are uploaded as they are produced, and the object is completed, then its
/// manifest uploaded, only once the dump is whole. Dropped before that (a failure), the upload
/// is aborted and no object appears.
pub struct DumpUpload {
    writer: crate::store::ObjectWriter,
    options: crate::store::StoreOptions,
}

impl DumpUpload {
    /// Starts the upload for `location`; `None` when the dump is written as a local file.
    pub fn open(location: &Location) -> Result<Option<DumpUpload>, crate::store::StoreError> {
        let options = crate::store::StoreOptions::default();
        match (location, location.local_path()) {
            (Location::Url(url), None) => Ok(Some(DumpUpload {
                writer: crate::store::open_writer(url, &options)?,
                options,
            })),
            _ => Ok(None),
        }
    }

    /// Uploads what `sink` produced since the last call.
    pub async fn send(&mut self, sink: &mut DumpSink) -> Result<(), crate::store::StoreError> {
        let pending = sink.take_pending();
        if pending.is_empty() {
            return Ok(());
        }
        self.writer.write(&pending).await
    }

    /// Uploads the last bytes, completes the object, then uploads the manifest. A manifest
    /// that cannot be uploaded takes the dump back, so a failure means no backup was written.
    pub async fn complete(
        mut self,
        summary: &SinkSummary,
        remainder: Remainder,
    ) -> Result<(), crate::store::StoreError> {
        let (rest, manifest) = remainder;
        self.writer.write(&rest).await?;
        self.writer.finish().await?;
        let Some(manifest_url) = &summary.manifest else {
            return Ok(());
        };
        let uploaded = async {
            let mut writer = crate::store::open_writer(manifest_url, &self.options)?;
            writer.write(&manifest).await?;
            writer.finish().await.map(|_| ())
        }
        .await;
        if uploaded.is_err() {
            let _ = crate::store::stream::delete_object(&summary.location, &self.options).await;
        }
        uploaded
    }

    /// Gives up: aborts the upload so no object (and no stored part) remains.
    pub async fn abort(self) -> Result<(), crate::store::StoreError> {
        self.writer.abort().await
    }
}

/// Puts a complete dump and its manifest in place. The manifest is written and synced under
/// a temporary name first, so running out of space (or any write error) leaves nothing under
/// either name; the dump is renamed into place before the manifest (no manifest ever
/// describes a missing dump), and a failed manifest rename removes the dump again: an
/// error always means no backup was written. `write` fills the manifest's file (a seam for
/// tests).
fn commit_with_manifest(
    dump: AtomicFile,
    dump_path: &std::path::Path,
    manifest_path: &std::path::Path,
    text: &[u8],
    write: impl FnOnce(&mut AtomicFile, &[u8]) -> std::io::Result<()>,
) -> Result<(), BackupError> {
    let manifest_error = |source| BackupError::Io {
        action: "write",
        target: manifest_path.display().to_string(),
        source,
    };
    let mut manifest = AtomicFile::create(manifest_path).map_err(manifest_error)?;
    write(&mut manifest, text).map_err(manifest_error)?;
    manifest.sync().map_err(manifest_error)?;
    dump.commit().map_err(|source| BackupError::Io {
        action: "write",
        target: dump_path.display().to_string(),
        source,
    })?;
    if let Err(source) = manifest.commit() {
        // Without its manifest the dump is not a backup ankus wrote: take it back.
        let _ = std::fs::remove_file(dump_path);
        return Err(manifest_error(source));
    }
    Ok(())
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

    fn sink_with_one_repo(path: &std::path::Path) -> DumpSink {
        let mut sink = DumpSink::create(&Location::File(path.to_path_buf()), SourceInfo::default())
            .expect("create");
        let request = crate::proto::pfs::CreateRepoRequest {
            repo: Some(crate::proto::pfs::Repo {
                name: "left".into(),
            }),
            ..Default::default()
        };
        sink.write_op(&wrap(
            OpVersion::V1_11,
            OpKind::Repo,
            &request.encode_to_vec(),
        ))
        .expect("write");
        sink
    }

    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_manifest_that_cannot_be_written_leaves_no_dump_under_its_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b.dump");
        // A directory where the manifest goes: its rename fails after the dump's.
        std::fs::create_dir(dir.path().join("b.dump.manifest.json")).expect("mkdir");
        let error = sink_with_one_repo(&path).finish().expect_err("no manifest");
        assert!(
            error.to_string().contains("b.dump.manifest.json"),
            "{error}"
        );
        assert!(!path.exists(), "the dump is gone with its manifest");
        assert_eq!(names_in(dir.path()), ["b.dump.manifest.json"]);
    }

    #[test]
    fn a_full_disk_while_writing_the_manifest_leaves_no_dump_under_its_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b.dump");
        let sink = sink_with_one_repo(&path);
        let (_, _, target) = sink.writer.finish().expect("finish");
        let Target::File(file) = target else {
            panic!("a file target");
        };
        let error = commit_with_manifest(file, &path, &manifest_path(&path), b"{}", |_, _| {
            Err(std::io::Error::from_raw_os_error(28))
        })
        .expect_err("ENOSPC");
        assert!(
            crate::kind::chain_text(&error).contains("No space left on device"),
            "{error}"
        );
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }
}
