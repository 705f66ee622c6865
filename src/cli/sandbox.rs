//! `ankus sandbox`: runs an `old` and a `new` emulated pachd in the foreground until
//! interrupted; also the temporary sandbox behind `run --sandbox` and `repl --sandbox`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::host::context::HostOptions;
use crate::host::runtime::block_on_uncancellable;
use crate::sandbox::cluster::{Sandbox, SandboxConfig};
use crate::sandbox::pachd::PachdVersion;

use super::args::SandboxArgs;
use super::console::Console;

/// The one line printed when the sandbox is ready.
fn ready_line(sandbox: &Sandbox) -> String {
    let describe = |name: &str| {
        sandbox
            .cluster(name)
            .map(|c| format!("{name}={} ({})", c.pachd_address(), c.cluster.version()))
            .unwrap_or_default()
    };
    format!(
        "sandbox ready: {} {} dir={} (PACH_CONFIG={})",
        describe("old"),
        describe("new"),
        sandbox.dir().display(),
        sandbox.pach_config_path().display()
    )
}

/// Runs `ankus sandbox`.
pub fn execute(args: &SandboxArgs, console: &Console) -> anyhow::Result<u8> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".ankus").join("sandbox"));
    let config = SandboxConfig {
        dir,
        old_version: args.old,
        new_version: args.new,
        seed: args.seed.clone(),
    };
    let sandbox = block_on_uncancellable(Sandbox::start(config)).context("start the sandbox")?;
    console.out(&ready_line(&sandbox));
    block_on_uncancellable(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    block_on_uncancellable(sandbox.shutdown());
    Ok(super::EXIT_OK)
}

/// A sandbox living in a temporary directory for the length of a run or REPL session.
pub struct TemporarySandbox {
    sandbox: Option<Sandbox>,
    _dir: tempfile::TempDir,
}

impl Drop for TemporarySandbox {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            block_on_uncancellable(sandbox.shutdown());
        }
    }
}

/// Starts a fresh sandbox (1.11 old, 1.13 new) in a temporary directory and points the host's
/// contexts `old` and `new` at it.
pub fn start_temporary(options: &mut HostOptions) -> anyhow::Result<TemporarySandbox> {
    let dir = tempfile::Builder::new()
        .prefix("ankus-sandbox-")
        .tempdir()
        .context("create the sandbox directory")?;
    let config = SandboxConfig {
        dir: dir.path().to_path_buf(),
        old_version: PachdVersion::v1_11(),
        new_version: PachdVersion::v1_13(),
        seed: None,
    };
    let sandbox = block_on_uncancellable(Sandbox::start(config)).context("start the sandbox")?;
    options.pach_config = Some(sandbox.pach_config_path());
    options.sandbox = Some(sandbox.info());
    Ok(TemporarySandbox {
        sandbox: Some(sandbox),
        _dir: dir,
    })
}
