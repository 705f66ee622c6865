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

    /// The local file a location names: a path, or the file of a `file://` URL. Dumps and
    /// manifests at either are written the same way (temporary name, mode 0600, rename), and
    /// their manifests read with the same checks.
    pub fn local_path(&self) -> Option<PathBuf> {
        match self {
            Location::File(path) => Some(path.clone()),
            Location::Url(url) => match crate::store::StoreUrl::parse(url) {
                Ok(parsed) if parsed.scheme == crate::store::location::Scheme::File => {
                    Some(PathBuf::from(parsed.bucket))
                }
                _ => None,
            },
            Location::Std => None,
        }
    }

    /// The dump's file name (the last segment of its path or URL).
    pub fn file_name(&self) -> String {
        match self {
            Location::File(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Location::Std => String::new(),
            Location::Url(url) => url.rsplit('/').next().unwrap_or_default().to_owned(),
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
