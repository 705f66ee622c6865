//! The manifest written beside every backup ankus makes (`NAME.manifest.json`): what the dump
//! holds and its sha256, so readers can check a dump before trusting it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::BackupError;
use super::inventory::Inventory;
use super::location::Location;
use crate::kind::Kinded;

/// Where a dump came from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    /// The pachctl context or address extracted from.
    #[serde(default)]
    pub cluster: String,
    /// pachd's version, e.g. `1.11.9`.
    #[serde(default)]
    pub pachd_version: String,
    /// The cluster deployment id, when the server reports one.
    #[serde(default)]
    pub deployment_id: String,
    /// Extract flags (`objects`, `auth`, ...).
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
}

/// The manifest document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Manifest format version.
    pub manifest_version: u32,
    /// The dump's file name.
    pub file: String,
    /// sha256 of the dump file, hex.
    pub sha256: String,
    /// Size of the dump file.
    pub bytes: u64,
    /// Records in the dump.
    pub records: u64,
    /// Records per op version.
    pub versions: BTreeMap<String, u64>,
    /// Records per op kind.
    pub kinds: BTreeMap<String, u64>,
    /// Where it came from.
    pub source: SourceInfo,
    /// When it was written, RFC 3339.
    pub created_at: String,
    /// The ankus version that wrote it.
    pub ankus_version: String,
}

/// The manifest path for a dump path: `DIR/NAME.manifest.json`.
pub fn manifest_path(dump: &Path) -> PathBuf {
    let mut name = dump
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".manifest.json");
    dump.with_file_name(name)
}

/// The manifest format this ankus writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The largest manifest read. ankus writes about a kilobyte; anything near this is not one,
/// and an unbounded read would let a huge or endless file exhaust memory.
pub const MANIFEST_LIMIT: u64 = 1 << 20;

/// Where the manifest of the dump at `dump` is: `NAME.manifest.json` beside a file, or the
/// object `URL.manifest.json`; stdin has none.
pub fn manifest_location(dump: &Location) -> Option<Location> {
    match dump {
        Location::File(path) => Some(Location::File(manifest_path(path))),
        Location::Url(url) => Some(Location::Url(format!("{url}.manifest.json"))),
        Location::Std => None,
    }
}

impl Manifest {
    /// Reads the manifest beside `dump`, if there is one.
    pub fn read_beside(dump: &Path) -> Result<Option<(PathBuf, Manifest)>, BackupError> {
        let path = manifest_path(dump);
        let Some(bytes) = read_local(&path)? else {
            return Ok(None);
        };
        let manifest = Manifest::parse(&bytes).map_err(|message| BackupError::BadManifest {
            path: path.clone(),
            message,
        })?;
        Ok(Some((path, manifest)))
    }

    /// Reads the manifest of the dump at `dump` (a path, a `file://` file or an object), if
    /// there is one; returns where it was read and what it says.
    pub fn read_for(dump: &Location) -> Result<Option<(String, Manifest)>, BackupError> {
        let Some(at) = manifest_location(dump) else {
            return Ok(None);
        };
        let shown = at.display();
        let bytes = match (at.local_path(), &at) {
            (Some(path), _) => read_local(&path)?,
            (None, Location::Url(url)) => read_object(url)?,
            (None, _) => None,
        };
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let manifest = Manifest::parse(&bytes).map_err(|message| BackupError::BadManifest {
            path: PathBuf::from(&shown),
            message,
        })?;
        Ok(Some((shown, manifest)))
    }

    /// Parses manifest JSON of a version this ankus reads. The message never quotes the
    /// document: a file named like a manifest may hold anything.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|error| {
            let what = match error.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "is not JSON"
                }
                serde_json::error::Category::Data => {
                    "lacks a manifest field or has one of the wrong type"
                }
                serde_json::error::Category::Io => "could not be read",
            };
            format!("{what} (line {}, column {})", error.line(), error.column())
        })?;
        if manifest.manifest_version != MANIFEST_VERSION {
            return Err(format!(
                "manifest_version is {}; this ankus reads version {MANIFEST_VERSION}",
                manifest.manifest_version
            ));
        }
        Ok(manifest)
    }

    /// Compares the manifest with what was read from the dump named `file`; returns every
    /// difference.
    pub fn differences(
        &self,
        file: &str,
        sha256: &str,
        bytes: u64,
        inventory: &Inventory,
    ) -> Vec<String> {
        let mut differences = Vec::new();
        if self.file != file {
            differences.push(format!("the dump is {file}, manifest says {}", self.file));
        }
        if self.sha256 != sha256 {
            differences.push(format!("sha256 is {sha256}, manifest says {}", self.sha256));
        }
        if self.bytes != bytes {
            differences.push(format!(
                "size is {bytes} bytes, manifest says {}",
                self.bytes
            ));
        }
        if self.records != inventory.records {
            differences.push(format!(
                "{} records, manifest says {}",
                inventory.records, self.records
            ));
        }
        if self.versions != inventory.versions {
            differences.push(format!(
                "op versions {:?} differ from the manifest's {:?}",
                inventory.versions, self.versions
            ));
        }
        if self.kinds != inventory.kinds {
            differences.push(format!(
                "op counts {:?} differ from the manifest's {:?}",
                inventory.kinds, self.kinds
            ));
        }
        differences
    }
}

/// Checks the dump at `location`, as read (`sha256`, `bytes` stored, `inventory`), against
/// its manifest: `checked`, `absent` (no manifest beside it) or `not applicable` (stdin).
pub fn check_beside(
    location: &Location,
    sha256: &str,
    bytes: u64,
    inventory: &Inventory,
) -> Result<String, BackupError> {
    if *location == Location::Std {
        return Ok("not applicable".to_owned());
    }
    let Some((shown, manifest)) = Manifest::read_for(location)? else {
        return Ok("absent".to_owned());
    };
    let differences = manifest.differences(&location.file_name(), sha256, bytes, inventory);
    if differences.is_empty() {
        Ok("checked".to_owned())
    } else {
        Err(BackupError::ManifestMismatch {
            path: PathBuf::from(shown),
            message: differences.join("; "),
        })
    }
}

fn not_a_manifest(path: &Path, message: String) -> BackupError {
    BackupError::BadManifest {
        path: path.to_path_buf(),
        message,
    }
}

/// A local manifest's bytes, `None` when there is none. Only a regular file of at most
/// [`MANIFEST_LIMIT`] bytes is read: a FIFO would block the reader forever, a device or a
/// huge file would never end.
fn read_local(path: &Path) -> Result<Option<Vec<u8>>, BackupError> {
    let io_error = |source| BackupError::Io {
        action: "read",
        target: path.display().to_string(),
        source,
    };
    let refuse_kind = |metadata: &std::fs::Metadata| {
        (!metadata.is_file()).then(|| {
            not_a_manifest(
                path,
                "is not a regular file (a manifest is a file ankus wrote)".to_owned(),
            )
        })
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(error)),
    };
    if let Some(refusal) = refuse_kind(&metadata) {
        return Err(refusal);
    }
    let file = std::fs::File::open(path).map_err(io_error)?;
    // The path may have been replaced between the check and the open.
    if let Some(refusal) = refuse_kind(&file.metadata().map_err(io_error)?) {
        return Err(refusal);
    }
    let mut bytes = Vec::new();
    file.take(MANIFEST_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MANIFEST_LIMIT {
        return Err(too_large(path));
    }
    Ok(Some(bytes))
}

fn too_large(path: &Path) -> BackupError {
    not_a_manifest(
        path,
        format!("is larger than {MANIFEST_LIMIT} bytes (ankus writes about a kilobyte)"),
    )
}

/// An object manifest's bytes, `None` when there is none; at most [`MANIFEST_LIMIT`] bytes
/// are read. Called from the plain thread that read the dump.
fn read_object(url: &str) -> Result<Option<Vec<u8>>, BackupError> {
    use tokio::io::AsyncReadExt;
    let io_error = |error: std::io::Error| BackupError::Io {
        action: "read",
        target: url.to_owned(),
        source: error,
    };
    let options = crate::store::StoreOptions::default();
    crate::host::runtime::block_on_uncancellable(async {
        let reader = match crate::store::open_reader(url, &options).await {
            Ok(reader) => reader,
            Err(error) if error.kind() == crate::kind::Kind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(std::io::Error::other(error))),
        };
        if reader.size() > MANIFEST_LIMIT {
            return Err(too_large(Path::new(url)));
        }
        let mut bytes = Vec::new();
        reader
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(io_error)?;
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(too_large(Path::new(url)));
        }
        Ok(Some(bytes))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(version: u32) -> String {
        serde_json::json!({
            "manifest_version": version, "file": "b.dump", "sha256": "00", "bytes": 1,
            "records": 1, "versions": {"1.11": 1}, "kinds": {"repo": 1}, "source": {},
            "created_at": "2024-05-01T00:00:00Z", "ankus_version": "0.1.0"
        })
        .to_string()
    }

    #[test]
    fn a_manifest_of_another_version_is_refused() {
        assert!(Manifest::parse(manifest_json(1).as_bytes()).is_ok());
        let error = Manifest::parse(manifest_json(2).as_bytes()).expect_err("version 2");
        assert_eq!(error, "manifest_version is 2; this ankus reads version 1");
    }

    #[test]
    fn a_malformed_manifest_is_refused_without_quoting_it() {
        let secret = r#"{"manifest_version": "hunter2-secret"}"#;
        let error = Manifest::parse(secret.as_bytes()).expect_err("wrong type");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.starts_with("lacks a manifest field"), "{error}");
        let error = Manifest::parse(b"hunter2 not json").expect_err("not json");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn the_dump_name_and_op_versions_are_compared_with_the_manifest() {
        let manifest = Manifest::parse(manifest_json(1).as_bytes()).expect("parse");
        let mut inventory = crate::backup::inventory::InventoryBuilder::default()
            .finish(crate::backup::reader::Format::Snappy, 0);
        inventory.records = 1;
        inventory.versions = BTreeMap::from([("1.13".to_owned(), 1)]);
        inventory.kinds = BTreeMap::from([("repo".to_owned(), 1)]);
        assert_eq!(
            manifest.differences("c.dump", "00", 1, &inventory),
            [
                "the dump is c.dump, manifest says b.dump",
                "op versions {\"1.13\": 1} differ from the manifest's {\"1.11\": 1}"
            ]
        );
    }

    #[test]
    fn a_fifo_or_an_oversized_manifest_is_refused_unread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dump = dir.path().join("b.dump");
        let made = std::process::Command::new("mkfifo")
            .arg(manifest_path(&dump))
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Reading a FIFO without a writer would block forever: it must not be opened.
        let error = Manifest::read_beside(&dump).expect_err("a FIFO");
        assert!(
            error.to_string().contains("is not a regular file"),
            "{error}"
        );

        std::fs::remove_file(manifest_path(&dump)).expect("remove");
        std::fs::write(
            manifest_path(&dump),
            vec![b' '; (MANIFEST_LIMIT + 1) as usize],
        )
        .expect("write");
        let error = Manifest::read_beside(&dump).expect_err("too large");
        assert!(
            error.to_string().contains("is larger than 1048576 bytes"),
            "{error}"
        );
    }
}
