//! `ankus run SCRIPT`: resolve the script, build the host, run it, print the plan or the JSON
//! result, and exit with 0, 1, 2, or 128 + the signal
//! that interrupted it (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::host::context::{FsPolicy, HostCtx, HostOptions, OutputMode};
use crate::host::convert::to_json_in;
use crate::host::engine::{Limits, build_engine};
use crate::host::run::run_script;
use crate::host::sources;

use super::args::{Cli, RunArgs, ScriptOptions};
use super::console::Console;

/// The local directory an `-a` value names, which the run may then touch: the directory a
/// path or `file://` URL names, or the directory of the file it names (a dump's manifest and
/// side files go beside it). The operator typed it, so it needs no `--allow-path`. Values that
/// name no local path (context names, numbers, other URLs) give `None`.
fn named_directory(value: &str) -> Option<PathBuf> {
    let path = match value.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
            PathBuf::from(rest.strip_prefix("localhost").unwrap_or(rest))
        }
        Some(_) => return None,
        None if value.contains('/') => PathBuf::from(value),
        None => return None,
    };
    if path.is_dir() {
        return Some(path);
    }
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map(Path::to_path_buf)
}

/// Host options from the command line, shared by `run` and `repl`.
pub fn host_options(
    cli: &Cli,
    script_options: &ScriptOptions,
    args: BTreeMap<String, String>,
    console: &Console,
) -> HostOptions {
    let mut roots: Vec<PathBuf> = script_options.allow_path.clone();
    roots.push(std::env::temp_dir());
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    roots.extend(args.values().filter_map(|value| named_directory(value)));
    HostOptions {
        args,
        dry_run: script_options.dry_run,
        assume_yes: script_options.yes,
        output: console.output,
        verbosity: console.verbosity,
        stdout: console.print_sink(),
        stderr: console.log_sink(),
        reveal: console.reveal_sink(),
        fs_policy: FsPolicy::new(roots),
        allow_exec: script_options.allow_exec,
        scripts_dir: cli.scripts.clone(),
        interactive: std::io::stdin().is_terminal(),
        call_timeout: Duration::from_secs(script_options.call_timeout.max(1)),
        pach_config: None,
        kubeconfig: None,
        sandbox: None,
    }
}

/// Limits from the command line.
pub fn limits(script_options: &ScriptOptions) -> Limits {
    let mut limits = Limits::default();
    if let Some(max_operations) = script_options.max_operations {
        limits.max_operations = max_operations;
    }
    if let Some(max_string_size) = script_options.max_string_size {
        limits.max_string_size = max_string_size;
    }
    if let Some(max_array_size) = script_options.max_array_size {
        limits.max_array_size = max_array_size;
    }
    if let Some(max_map_size) = script_options.max_map_size {
        limits.max_map_size = max_map_size;
    }
    if let Some(max_call_levels) = script_options.max_call_levels {
        limits.max_call_levels = max_call_levels;
    }
    limits
}

/// Cancels `host` on Ctrl-C for as long as the process runs.
pub fn cancel_on_ctrl_c(host: &Arc<HostCtx>) {
    let host = Arc::downgrade(host);
    crate::host::runtime::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            match host.upgrade() {
                Some(host) => {
                    host.error("interrupted: stopping at the next safe point (cleanups will run)");
                    host.cancel();
                }
                None => break,
            }
        }
    });
}

/// Cancels `host` on SIGINT, SIGTERM and SIGHUP for as long as the process runs: a run
/// stopped by Kubernetes (SIGTERM) or a closed terminal (SIGHUP) gets the same compensation as
/// Ctrl-C: the script stops at its next safe point and its deferred cleanups run.
pub fn cancel_on_signals(host: &Arc<HostCtx>) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, number, name) in [
        (SignalKind::interrupt(), 2, "SIGINT"),
        (SignalKind::terminate(), 15, "SIGTERM"),
        (SignalKind::hangup(), 1, "SIGHUP"),
    ] {
        let host = Arc::downgrade(host);
        crate::host::runtime::spawn(async move {
            let Ok(mut stream) = signal(kind) else {
                return;
            };
            while stream.recv().await.is_some() {
                match host.upgrade() {
                    Some(host) => {
                        host.error(&format!(
                            "interrupted ({name}): stopping at the next safe point (cleanups will run)"
                        ));
                        host.cancel_by_signal(number);
                    }
                    None => break,
                }
            }
        });
    }
}

/// Runs `ankus run`.
pub fn execute(cli: &Cli, run_args: &RunArgs, console: &Console) -> anyhow::Result<u8> {
    let script = sources::find_script(&run_args.script, cli.scripts.as_deref())?;
    let args: BTreeMap<String, String> = run_args.args.iter().cloned().collect();
    let mut options = host_options(cli, &run_args.script_options, args, console);
    let sandbox = if run_args.sandbox {
        let setup = super::sandbox::TemporarySetup {
            seed: run_args.seed.clone(),
            old: run_args.old,
            new: run_args.new,
            deploy_new: false,
            wanted: crate::host::sources::sandbox_args(&script.text).map_err(|problem| {
                anyhow::anyhow!(
                    "script {} cannot run with --sandbox: {problem}",
                    script.name
                )
            })?,
        };
        Some(super::sandbox::start_temporary(&mut options, &setup)?)
    } else {
        None
    };
    let host = HostCtx::new(options);
    cancel_on_signals(&host);
    let engine = build_engine(&host, &limits(&run_args.script_options));
    // A fresh sandbox has nothing to resume, so its journal lives (and dies) with it.
    let journal_root = match &sandbox {
        Some(sandbox) => sandbox.dir().to_path_buf(),
        None => PathBuf::from(".ankus"),
    };
    let journal_path = run_args
        .journal
        .clone()
        .unwrap_or_else(|| journal_root.join(format!("{}.journal.json", script.name)));
    let journal = crate::host::run::JournalChoice {
        path: &journal_path,
        restart: run_args.restart,
    };
    let started = std::time::SystemTime::now();
    let outcome = run_script(&host, &engine, &script, Some(journal));
    let plan = host.plan();
    match console.output {
        OutputMode::Text => {
            if host.is_dry_run() {
                console.out(&plan.to_table());
            }
        }
        OutputMode::Json => {
            let document = match &outcome {
                Ok(value) => serde_json::json!({
                    "ok": true,
                    "dry_run": host.is_dry_run(),
                    "result": to_json_in(&engine, value),
                    "plan": plan.entries(),
                }),
                Err(failure) => serde_json::json!({
                    "ok": false,
                    "dry_run": host.is_dry_run(),
                    "error": failure.rendered.lines().next().unwrap_or_default().trim_start_matches("error: "),
                    "exit_code": failure.exit_code,
                    "plan": plan.entries(),
                }),
            };
            console.out(&serde_json::to_string_pretty(&document)?);
        }
    }
    if let Some(sandbox) = sandbox {
        let written: Vec<String> = host
            .args()
            .values()
            .filter(|value| {
                // Files in the sandbox's folder that this run wrote (not its own manifests).
                let path = std::path::Path::new(value.as_str());
                path.starts_with(sandbox.dir())
                    && std::fs::metadata(path)
                        .and_then(|meta| meta.modified())
                        .is_ok_and(|modified| modified >= started)
            })
            .cloned()
            .collect();
        if run_args.keep {
            let kept = sandbox.keep();
            console.err(&format!(
                "sandbox: kept in {} (state, buckets and what the run wrote there)",
                kept.display()
            ));
        } else if !written.is_empty() {
            console.err(&format!(
                "sandbox: removing {} with what the run wrote there ({}); pass --keep to keep it",
                sandbox.dir().display(),
                written.join(", ")
            ));
        }
    }
    match outcome {
        Ok(_) => Ok(super::EXIT_OK),
        Err(failure) => {
            console.err(&failure.rendered);
            // Interrupted: 128 + the signal, as a shell reports it (130 for Ctrl-C).
            let code = match host.signal() {
                Some(number) if failure.exit_code == 130 => 128 + number,
                _ => failure.exit_code,
            };
            Ok(u8::try_from(code).unwrap_or(super::EXIT_FAILED))
        }
    }
}
