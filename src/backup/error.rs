//! Errors reading, checking and writing backups. Every decoding error names the record number
//! and the byte offset (in the decompressed record stream) where it was found.

use std::path::PathBuf;

use crate::kind::{Kind, Kinded};

/// Where in a dump something went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// The 0-based record number.
    pub record: u64,
    /// The byte offset of the record's length prefix in the decompressed stream.
    pub offset: u64,
    /// Compressed bytes consumed so far (for snappy streams), when known.
    pub compressed: Option<u64>,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} at byte offset {}", self.record, self.offset)?;
        if let Some(compressed) = self.compressed {
            write!(f, " (compressed offset {compressed})")?;
        }
        Ok(())
    }
}

/// What can go wrong with a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The stream ends inside a record.
    #[error("dump is truncated: {at} needs {needed} more byte(s)")]
    Truncated {
        /// Where.
        at: At,
        /// How many bytes were missing.
        needed: u64,
    },
    /// A length prefix is negative or above pachd's 20 MiB message limit. The value read is
    /// not shown: a file that is no dump at all fails here, and its first bytes are its
    /// content.
    #[error(
        "dump has an invalid length prefix at {at}: negative or above the {limit}-byte record limit (is it a pachctl dump?)"
    )]
    BadLength {
        /// Where.
        at: At,
        /// The limit.
        limit: u64,
    },
    /// The snappy framing is corrupt (bad checksum, bad chunk, wrong stream identifier).
    #[error("dump is corrupt near {at}: {message}")]
    Corrupt {
        /// Where.
        at: At,
        /// What the decoder said.
        message: String,
    },
    /// A record's bytes are not an `admin.Op`.
    #[error("{at} is not a pachd admin.Op: {reason}")]
    NotAnOp {
        /// Where.
        at: At,
        /// Why not.
        reason: String,
    },
    /// An op breaks a relation a restore depends on (pachd would apply the ops before it
    /// and fail there).
    #[error("{at}: {problem}")]
    Broken {
        /// Where.
        at: At,
        /// Which relation.
        problem: super::relations::Broken,
    },
    /// An op larger than any dump reader (and pachd's restore) accepts.
    #[error(
        "op {record} ({kind}) is {length} bytes, above the {limit}-byte record limit of a dump"
    )]
    TooLarge {
        /// The record number.
        record: u64,
        /// The op kind.
        kind: &'static str,
        /// Its size.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// An `Op` with none of op1_7 … op1_13 set.
    #[error("{at} has no op version set (none of op1_7 … op1_13)")]
    NoVersion {
        /// Where.
        at: At,
    },
    /// Records of different pachd versions in one stream.
    #[error(
        "{at} is an op{found} record in a dump of op{first} records (pachd cannot restore mixed versions)"
    )]
    MixedVersions {
        /// Where.
        at: At,
        /// The version of the first record.
        first: String,
        /// The version found here.
        found: String,
    },
    /// The manifest beside the dump disagrees with it.
    #[error("dump does not match its manifest {path}: {message}")]
    ManifestMismatch {
        /// The manifest.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// The manifest could not be parsed.
    #[error("manifest {path} is not valid: {message}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An op could not be converted to or from a script map.
    #[error("op at record {record} cannot be edited: {message}")]
    Edit {
        /// The record number.
        record: u64,
        /// Why.
        message: String,
    },
    /// A source or destination could not be opened, read or written.
    #[error("failed to {action} {target}")]
    Io {
        /// What was being done (`read`, `write`, `open`).
        action: &'static str,
        /// The path or URL.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Kinded for BackupError {
    fn kind(&self) -> Kind {
        match self {
            BackupError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Kind::NotFound
            }
            BackupError::Io { .. } => Kind::Io,
            _ => Kind::Invalid,
        }
    }
}
