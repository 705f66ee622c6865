//! The real peers: pachd and pachctl 1.9.0 built from upstream's sources, run by
//! `shared/peers/pachyderm-1.9.0/real-pachd` outside Kubernetes (a real etcd, local storage,
//! a private ankus sandbox's emulated Kubernetes API). Each [`RealPachd`] is one cluster of
//! its own on free loopback ports, stopped when dropped.
//!
//! `.ci/setup` installs what the script needs (etcd-server, zstd, openssl, util-linux), so
//! nothing here is skipped: a missing peer fails the test that needs it, with the script's
//! own message.

#![allow(dead_code, reason = "each test module uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::support::{Outcome, ankus_bin};

/// The `real-pachd` script in the shared peers folder.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/pachyderm-1.9.0/real-pachd")
}

/// Where `real-pachd build` unpacks the binaries (one folder for the whole run).
fn cache() -> PathBuf {
    std::env::var_os("REAL_PACHD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ankus-peers/real"))
}

/// The folder holding the real `pachd` and `pachctl` 1.9.0, unpacked once per test run.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = Command::new("bash")
            .arg(script())
            .arg("build")
            .env("REAL_PACHD_CACHE", cache())
            .stdin(Stdio::null())
            .output()
            .expect("real-pachd runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "real-pachd build failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(stdout.trim())
    })
}

/// The real pachctl 1.9.0.
pub fn pachctl_bin() -> PathBuf {
    bin_dir().join("pachctl")
}

/// Runs the real pachctl with `envs` (a private config unless `PACH_CONFIG` is given) and
/// stdin from `stdin`, if any.
pub fn pachctl(args: &[&str], envs: &[(&str, &str)], stdin: Option<&[u8]>) -> Outcome {
    use std::io::Write as _;
    let home = tempfile::tempdir().expect("temp dir");
    // A config with a user ID, so pachctl does not announce that it generated one.
    std::fs::write(
        home.path().join("config.json"),
        r#"{"user_id":"ankus-tests","v1":{}}"#,
    )
    .expect("write pachctl config");
    let mut command = Command::new(pachctl_bin());
    command
        .args(args)
        .env_remove("PACH_CONTEXT")
        .env_remove("PACHD_ADDRESS")
        .env("HOME", home.path())
        .env("PACH_CONFIG", home.path().join("config.json"))
        .envs(envs.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("pachctl runs");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(bytes).expect("write pachctl stdin");
    }
    child.wait_with_output().expect("pachctl finishes").into()
}

/// Starts are serialised: a base port is free only until the started pachd listens on it.
fn start_lock() -> &'static Mutex<()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
}

/// A base port N such that N..N+9 are free on every interface (pachd binds them all), below
/// the kernel's ephemeral range; the script's own pick covers only eight bases, too few for a
/// test run beside benchmarks and other sessions.
fn free_base() -> u16 {
    static NEXT: Mutex<u16> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    if *next == 0 {
        // Spread runs of different processes apart.
        *next = 20_000 + (std::process::id() % 800) as u16 * 10;
    }
    for _ in 0..1_200 {
        let base = *next;
        *next = if base >= 31_980 { 20_000 } else { base + 10 };
        let free = (base..base + 10).all(|port| {
            std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no 10 consecutive free ports between 20000 and 32000");
}

/// One running real pachd 1.9.0 (etcd, pachd, a private sandbox Kubernetes API).
pub struct RealPachd {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT` of pachd's gRPC API.
    pub address: String,
}

impl RealPachd {
    /// Starts a fresh, empty cluster (blocking: call it from `spawn_blocking` in async tests,
    /// or use [`RealPachd::start_async`]).
    pub fn start() -> RealPachd {
        bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("real-pachd-")
            .tempdir()
            .expect("temp dir");
        let output = {
            let _serial = start_lock().lock().unwrap_or_else(|p| p.into_inner());
            let base = free_base();
            Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(dir.path())
                .arg("--port")
                .arg(base.to_string())
                .env("ANKUS", ankus_bin())
                .env("REAL_PACHD_CACHE", cache())
                .stdin(Stdio::null())
                .output()
                .expect("real-pachd runs")
        };
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let real = RealPachd {
            dir,
            address: stdout.lines().last().unwrap_or_default().to_owned(),
        };
        assert!(
            output.status.success() && real.address.starts_with("127.0.0.1:"),
            "real-pachd start failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        real
    }

    /// [`RealPachd::start`] off the async threads.
    pub async fn start_async() -> RealPachd {
        tokio::task::spawn_blocking(RealPachd::start)
            .await
            .expect("joins")
    }

    /// The folder of this cluster (logs, `kube-requests.log`, `pachctl-config.json`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://{}", self.address)
    }

    /// The pachctl config the script wrote: a v1 block for pachctl 1.9.0 and a v2 block with
    /// context `real`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("pachctl-config.json")
    }

    /// The real pachctl against this cluster, through the script's config.
    pub fn pachctl(&self, args: &[&str]) -> Outcome {
        let config = self.config();
        pachctl(
            args,
            &[("PACH_CONFIG", config.to_str().expect("utf-8"))],
            None,
        )
    }

    /// The Kubernetes requests pachd made (the TLS terminator's log).
    pub fn kube_requests(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-requests.log")).unwrap_or_default()
    }
}

impl Drop for RealPachd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
