//! Where a backup is read from or written to: a file, stdin/stdout (`-`), or an object-store
//! URL.

use std::io::Read;
use std::path::PathBuf;

use super::error::BackupError;

/// A parsed backup location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local file.
    File(PathBuf),
    /// Standard input or output.
    Std,
    /// An object-store URL (`s3://bucket/key`, `gs://…`, `file://…`, ...).
    Url(String),
}

impl Location {
    /// Parses `-`, a URL with a scheme, or a path.
    pub fn parse(text: &str) -> Location {
        if text == "-" {
            Location::Std
        } else if let Some((scheme, _)) = text.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '+')
        {
            Location::Url(text.to_owned())
        } else {
            Location::File(PathBuf::from(text))
        }
    }

    /// How the location is shown in messages (never with credentials).
    pub fn display(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Std => "-".to_owned(),
            Location::Url(url) => url.clone(),
        }
    }

    /// Opens the location for reading.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, BackupError> {
        match self {
            Location::File(path) => std::fs::File::open(path)
                .map(|file| {
                    Box::new(std::io::BufReader::with_capacity(1 << 20, file))
                        as Box<dyn Read + Send>
                })
                .map_err(|source| BackupError::Io {
                    action: "open",
                    target: path.display().to_string(),
                    source,
                }),
            Location::Std => Ok(Box::new(std::io::stdin())),
            Location::Url(url) => {
                let options = crate::store::StoreOptions::default();
                crate::host::runtime::open_blocking_reader(crate::store::open_reader(url, &options))
                    .map(|reader| {
                        Box::new(std::io::BufReader::with_capacity(1 << 20, reader))
                            as Box<dyn Read + Send>
                    })
                    .map_err(|source| BackupError::Io {
                        action: "open",
                        target: url.clone(),
                        source,
                    })
            }
        }
    }
}
