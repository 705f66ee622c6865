//! Where scripts and stdlib modules come from: an override directory, the working directory's
//! `scripts/` and `stdlib/`, then the copies embedded in the binary.

use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Where a piece of source text was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    File(PathBuf),
    /// The copy built into the binary.
    Embedded,
}

/// A script or module's text and where it came from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The bundled name, or the file stem for a path.
    pub name: String,
    /// The text.
    pub text: String,
    /// Where it was found.
    pub origin: Origin,
}

impl Source {
    /// The name errors show: the file path, or `<bundled>/scripts/NAME.rhai`.
    pub fn display_name(&self, kind: &str) -> String {
        match &self.origin {
            Origin::File(path) => path.display().to_string(),
            Origin::Embedded => format!("<bundled>/{kind}/{}.rhai", self.name),
        }
    }
}

/// Errors finding a script or module.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Neither a file nor a bundled name.
    #[error("no script named '{name}' (bundled scripts: {known}; or give a path to a .rhai file)")]
    UnknownScript {
        /// What was asked for.
        name: String,
        /// The bundled names.
        known: String,
    },
    /// The file exists but could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The path.
        path: PathBuf,
        /// Where the first bad byte is.
        offset: usize,
    },
}

impl crate::kind::Kinded for SourceError {
    fn kind(&self) -> crate::kind::Kind {
        match self {
            SourceError::UnknownScript { .. } => crate::kind::Kind::Usage,
            SourceError::Read { .. } => crate::kind::Kind::Io,
            SourceError::NotUtf8 { .. } => crate::kind::Kind::Usage,
        }
    }
}

/// The bundled scripts, `(name, text)`, sorted.
pub fn bundled_scripts() -> &'static [(&'static str, &'static str)] {
    embedded::SCRIPTS
}

/// The bundled stdlib modules, `(name, text)`, sorted.
pub fn bundled_stdlib() -> &'static [(&'static str, &'static str)] {
    embedded::STDLIB
}

/// Reads a UTF-8 file, naming the offset of the first bad byte if it is not text.
pub fn read_text(path: &Path) -> Result<String, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|error| SourceError::NotUtf8 {
        path: path.to_path_buf(),
        offset: error.utf8_error().valid_up_to(),
    })
}

/// The search roots before the embedded copies: the override directory, then `.`.
fn roots(override_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = override_dir {
        roots.push(dir.to_path_buf());
    }
    roots.push(PathBuf::from("."));
    roots
}

/// Finds a script: a path to a file, else `DIR/scripts/NAME.rhai`, `./scripts/NAME.rhai`, then the
/// bundled copy.
pub fn find_script(name: &str, override_dir: Option<&Path>) -> Result<Source, SourceError> {
    let as_path = Path::new(name);
    if name.ends_with(".rhai") || name.contains('/') || name.contains(std::path::MAIN_SEPARATOR) {
        let text = read_text(as_path)?;
        let stem = as_path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_owned());
        return Ok(Source {
            name: stem,
            text,
            origin: Origin::File(as_path.to_path_buf()),
        });
    }
    find_in("scripts", name, override_dir, bundled_scripts())?.ok_or_else(|| {
        SourceError::UnknownScript {
            name: name.to_owned(),
            known: bundled_scripts()
                .iter()
                .map(|(known, _)| *known)
                .collect::<Vec<_>>()
                .join(", "),
        }
    })
}

/// Finds a stdlib module by name: `DIR/stdlib/NAME.rhai`, `./stdlib/NAME.rhai`, then bundled.
pub fn find_module(name: &str, override_dir: Option<&Path>) -> Result<Option<Source>, SourceError> {
    find_in("stdlib", name, override_dir, bundled_stdlib())
}

fn find_in(
    kind: &str,
    name: &str,
    override_dir: Option<&Path>,
    bundled: &[(&str, &str)],
) -> Result<Option<Source>, SourceError> {
    for root in roots(override_dir) {
        let path = root.join(kind).join(format!("{name}.rhai"));
        if path.is_file() {
            return Ok(Some(Source {
                name: name.to_owned(),
                text: read_text(&path)?,
                origin: Origin::File(path),
            }));
        }
    }
    Ok(bundled
        .iter()
        .find(|(bundled_name, _)| *bundled_name == name)
        .map(|(bundled_name, text)| Source {
            name: (*bundled_name).to_owned(),
            text: (*text).to_owned(),
            origin: Origin::Embedded,
        }))
}

/// Writes the bundled scripts and stdlib to `DIR/scripts` and `DIR/stdlib`, refusing to
/// overwrite existing files. Returns the paths written.
pub fn eject(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut planned = Vec::new();
    for (kind, table) in [("scripts", bundled_scripts()), ("stdlib", bundled_stdlib())] {
        for (name, text) in table {
            planned.push((dir.join(kind).join(format!("{name}.rhai")), *text));
        }
    }
    if let Some((existing, _)) = planned.iter().find(|(path, _)| path.exists()) {
        return Err(SourceError::Read {
            path: existing.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "file exists; eject into an empty directory",
            ),
        });
    }
    let mut written = Vec::new();
    for (path, text) in planned {
        let parent = path.parent().expect("ejected paths have a parent");
        std::fs::create_dir_all(parent).map_err(|source| SourceError::Read {
            path: parent.to_path_buf(),
            source,
        })?;
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|source| {
            SourceError::Read {
                path: path.clone(),
                source,
            }
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The values a temporary sandbox offers a script (`run --sandbox`), by name.
pub const SANDBOX_VALUES: &[&str] = &["old", "new", "old_bucket", "new_bucket", "backup", "deploy"];

/// The sandbox defaults a script declares on its `//! sandbox: KEY=VALUE ...` line: which of
/// its arguments take which of [`SANDBOX_VALUES`] under `run --sandbox` (`-a` still wins).
/// A script without the line takes none, so no script gets another's arguments.
pub fn sandbox_args(text: &str) -> Result<Vec<(String, String)>, String> {
    let Some(line) = text
        .lines()
        .take_while(|line| line.starts_with("//"))
        .find_map(|line| line.strip_prefix("//! sandbox:"))
    else {
        return Ok(Vec::new());
    };
    line.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if SANDBOX_VALUES.contains(&value) && !key.is_empty() => {
                Ok((key.to_owned(), value.to_owned()))
            }
            _ => Err(format!(
                "its '//! sandbox:' line has '{pair}', which is not ARG=VALUE with a VALUE of {}",
                SANDBOX_VALUES.join(", ")
            )),
        })
        .collect()
}

#[cfg(test)]
mod sandbox_args_tests {
    use super::*;

    #[test]
    fn a_script_declares_its_sandbox_defaults_and_a_bad_entry_is_named() {
        let text = "//! Back up.\n//! sandbox: from=old to=backup\n//\nlet x = 1;";
        assert_eq!(
            sandbox_args(text).expect("parses"),
            [
                ("from".into(), "old".into()),
                ("to".into(), "backup".into())
            ]
        );
        assert!(
            sandbox_args("//! Nothing declared.\nlet x = 1;")
                .expect("ok")
                .is_empty()
        );
        let error = sandbox_args("//! x\n//! sandbox: to=elsewhere\n").expect_err("bad");
        assert!(
            error.contains("'to=elsewhere'") && error.contains("old_bucket"),
            "{error}"
        );
        for (name, text) in bundled_scripts() {
            sandbox_args(text).unwrap_or_else(|error| panic!("{name}: {error}"));
        }
    }
}
