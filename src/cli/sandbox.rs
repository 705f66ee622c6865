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
    let mut config = SandboxConfig::new(&dir);
    config.old_version = args.old;
    config.new_version = args.new;
    config.deploy_new = !args.no_new;
    match args.seed.as_deref() {
        Some("sample") => config.sample = true,
        Some(path) => config.seed = Some(PathBuf::from(path)),
        None => {}
    }
    let sandbox = block_on_uncancellable(Sandbox::start(config)).context("start the sandbox")?;
    match console.output {
        // One JSON line, as sandbox.json holds it, once everything answers.
        crate::host::context::OutputMode::Json => {
            let mut info = sandbox.info();
            info["ready"] = true.into();
            console.out(&info.to_string());
        }
        crate::host::context::OutputMode::Text => console.out(&ready_line(&sandbox)),
    }
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

/// How a temporary sandbox starts.
pub struct TemporarySetup {
    /// `sample` or a dump path.
    pub seed: String,
    /// `old`'s version.
    pub old: PachdVersion,
    /// `new`'s version.
    pub new: PachdVersion,
    /// Whether `new` runs from the start (the REPL) or waits for its manifests (flows).
    pub deploy_new: bool,
}

impl TemporarySandbox {
    /// The running sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("present until dropped")
    }

    /// The temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

/// Starts a fresh sandbox in a temporary directory and points the host at it: pachctl
/// contexts and kube contexts `old` and `new`, and default script arguments for the bundled
/// flows (`from`, `to`, `src_bucket`, `dst_bucket`, `backup`, `deploy`) that `-a` overrides.
pub fn start_temporary(
    options: &mut HostOptions,
    setup: &TemporarySetup,
) -> anyhow::Result<TemporarySandbox> {
    let dir = tempfile::Builder::new()
        .prefix("ankus-sandbox-")
        .tempdir()
        .context("create the sandbox directory")?;
    let mut config = SandboxConfig::new(dir.path());
    config.old_version = setup.old;
    config.new_version = setup.new;
    config.deploy_new = setup.deploy_new;
    if setup.seed == "sample" {
        config.sample = true;
    } else {
        config.seed = Some(PathBuf::from(&setup.seed));
    }
    let sandbox = block_on_uncancellable(Sandbox::start(config)).context("start the sandbox")?;
    options.pach_config = Some(sandbox.pach_config_path());
    options.kubeconfig = Some(sandbox.kubeconfig_path());
    let info = sandbox.info();
    let defaults = [
        ("from", "old".to_owned()),
        ("to", "new".to_owned()),
        (
            "src_bucket",
            info["buckets"]["old"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        (
            "dst_bucket",
            info["buckets"]["new"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        (
            "backup",
            dir.path().join("backup.dump").display().to_string(),
        ),
        ("deploy", sandbox.new_manifest_path().display().to_string()),
        ("sandbox", "true".to_owned()),
    ];
    for (key, value) in defaults {
        options.args.entry(key.to_owned()).or_insert(value);
    }
    // Files the flows write (backups, saved specs) go to the sandbox directory too.
    let mut roots = vec![dir.path().to_path_buf()];
    roots.extend(options.fs_policy.roots().iter().cloned());
    options.fs_policy = crate::host::context::FsPolicy::new(roots);
    options.sandbox = Some(info);
    Ok(TemporarySandbox {
        sandbox: Some(sandbox),
        _dir: dir,
    })
}
