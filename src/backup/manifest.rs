//! The manifest written beside every backup ankus makes (`NAME.manifest.json`): what the dump
//! holds and its sha256, so readers can check a dump before trusting it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::BackupError;

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

impl Manifest {
    /// Reads the manifest beside `dump`, if there is one.
    pub fn read_beside(dump: &Path) -> Result<Option<(PathBuf, Manifest)>, BackupError> {
        let path = manifest_path(dump);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BackupError::Io {
                    action: "read",
                    target: path.display().to_string(),
                    source,
                });
            }
        };
        let manifest = Manifest::parse(&bytes).map_err(|message| BackupError::BadManifest {
            path: path.clone(),
            message,
        })?;
        Ok(Some((path, manifest)))
    }

    /// Parses manifest JSON.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    }

    /// Compares the manifest with what was read from the dump; returns every difference.
    pub fn differences(
        &self,
        sha256: &str,
        bytes: u64,
        records: u64,
        kinds: &BTreeMap<String, u64>,
    ) -> Vec<String> {
        let mut differences = Vec::new();
        if self.sha256 != sha256 {
            differences.push(format!("sha256 is {sha256}, manifest says {}", self.sha256));
        }
        if self.bytes != bytes {
            differences.push(format!(
                "size is {bytes} bytes, manifest says {}",
                self.bytes
            ));
        }
        if self.records != records {
            differences.push(format!("{records} records, manifest says {}", self.records));
        }
        if &self.kinds != kinds {
            differences.push(format!(
                "op counts {kinds:?} differ from the manifest's {:?}",
                self.kinds
            ));
        }
        differences
    }
}
