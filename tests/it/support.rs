//! Helpers shared by the integration tests: run the `ankus` binary, write scripts to temporary
//! directories.

#![allow(dead_code, reason = "each test module uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `ankus` binary.
pub fn ankus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ankus"))
}

/// What a finished `ankus` process showed.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `ankus ARGS` in `dir` with stdin closed.
pub fn ankus_in(dir: &Path, args: &[&str]) -> Outcome {
    Command::new(ankus_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("ANKUS_SCRIPTS")
        .stdin(Stdio::null())
        .output()
        .expect("ankus runs")
        .into()
}

/// Writes `text` to `dir/name` (creating parents) and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
