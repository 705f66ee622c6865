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

/// Runs `ankus ARGS` in `dir` with `PACH_CONFIG=config` and extra environment, off the async
/// threads (tests that serve clusters in-process must not block their runtime).
pub async fn ankus_async(
    dir: &Path,
    config: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Outcome {
    let (dir, config) = (dir.to_path_buf(), config.to_path_buf());
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(ankus_bin())
            .args(&args)
            .current_dir(&dir)
            .env("PACH_CONFIG", &config)
            .env_remove("PACH_CONTEXT")
            .env_remove("PACHD_ADDRESS")
            .env_remove("ANKUS_SCRIPTS")
            .envs(envs)
            .stdin(Stdio::null())
            .output()
            .expect("ankus runs")
            .into()
    })
    .await
    .expect("joins")
}

/// Writes a pachctl v2 config with `contexts` (name, pachd_address, session_token) and
/// returns its path.
pub fn pach_config(dir: &Path, contexts: &[(&str, &str, Option<&str>)]) -> PathBuf {
    let mut map = serde_json::Map::new();
    for (name, address, token) in contexts {
        let mut context = serde_json::json!({ "pachd_address": address });
        if let Some(token) = token {
            context["session_token"] = serde_json::json!(token);
        }
        map.insert(name.to_string(), context);
    }
    let config = serde_json::json!({ "v2": { "active_context": contexts[0].0, "contexts": map } });
    let path = dir.join("pachctl-config.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    path
}

/// Deterministic bytes of `len` (xorshift), so two servers get the same files.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A copy of the shared pachd 1.11 fixture dump in the temporary directory, made once per
/// test process: scripts read files inside the allowed directories only (the working and
/// temporary directories, plus `--allow-path`), and the shared fixtures are outside them.
pub fn fixture_dump() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ankus-it-fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let copy = dir.join("pachd-1.11-auth.dump");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/pachd-1.11-auth.dump"),
            &copy,
        )
        .expect("copy the fixture");
        copy
    })
    .clone()
}
