//! The command line, as clap definitions: the single source of `--help` and completions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sandbox::pachd::PachdVersion;

/// ankus: back up, move and upgrade Pachyderm 1.x clusters with Rhai scripts.
#[derive(Debug, Parser)]
#[command(name = "ankus", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More output: debug messages, and tracing events (`-v` ankus's, `-vv` its clients' too,
    /// `-vvv` everything; `RUST_LOG` overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output (errors only).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Output format of results and plans.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Directory searched for scripts (`DIR/scripts`) and stdlib modules (`DIR/stdlib`) before
    /// the bundled copies.
    #[arg(long, global = true, env = "ANKUS_SCRIPTS", value_name = "DIR")]
    pub scripts: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--output` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script: a path to a .rhai file or the name of a bundled script.
    Run(RunArgs),
    /// Explore clusters interactively.
    Repl(ReplArgs),
    /// Inspect or verify a backup (a path, `-` for stdin, or an object-store URL).
    Backup {
        /// What to do.
        #[command(subcommand)]
        action: BackupAction,
    },
    /// List, show or eject the bundled scripts.
    Scripts {
        /// What to do with them.
        #[command(subcommand)]
        action: ScriptsAction,
    },
    /// Run an emulated old and new pachd on this machine until interrupted.
    Sandbox(SandboxArgs),
    /// Print the reference of every function scripts can call.
    Docs {
        /// Markdown or JSON.
        #[arg(long, value_enum, default_value_t = DocsFormat::Markdown)]
        format: DocsFormat,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Options shared by everything that runs scripts.
#[derive(Debug, Args)]
pub struct ScriptOptions {
    /// Record what would change instead of changing it, and print the plan.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to every confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Let scripts read and write local files below this directory too (repeatable). The
    /// working directory, the temporary directory and the directories of the paths given as
    /// `-a` values are allowed already.
    #[arg(long, value_name = "DIR")]
    pub allow_path: Vec<PathBuf>,
    /// Let scripts run programs with `exec`.
    #[arg(long)]
    pub allow_exec: bool,
    /// Stop a script after this many operations (0 = no limit; default 500000000).
    #[arg(long, value_name = "N", env = "ANKUS_MAX_OPERATIONS")]
    pub max_operations: Option<u64>,
    /// The longest string a script may build, in bytes (0 = no limit; default 256 MiB).
    #[arg(long, value_name = "BYTES", env = "ANKUS_MAX_STRING_SIZE")]
    pub max_string_size: Option<usize>,
    /// The most items an array or blob may hold (0 = no limit; default 10000000).
    #[arg(long, value_name = "N", env = "ANKUS_MAX_ARRAY_SIZE")]
    pub max_array_size: Option<usize>,
    /// The most entries a map may hold (0 = no limit; default 10000000).
    #[arg(long, value_name = "N", env = "ANKUS_MAX_MAP_SIZE")]
    pub max_map_size: Option<usize>,
    /// How deeply script functions may call each other (default 96).
    #[arg(long, value_name = "N", env = "ANKUS_MAX_CALL_LEVELS")]
    pub max_call_levels: Option<usize>,
    /// Deadline for one remote call, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub call_timeout: u64,
}

/// `ankus run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A path to a .rhai file, or a bundled script name (see `ankus scripts list`).
    pub script: String,
    /// A script argument, KEY=VALUE (repeatable).
    #[arg(short = 'a', long = "arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub args: Vec<(String, String)>,
    /// Start a fresh sandbox for the run and point the contexts `old` and `new` at it; the
    /// script gets the sandbox defaults its `//! sandbox:` line declares.
    #[arg(long)]
    pub sandbox: bool,
    /// With --sandbox: keep the sandbox's folder after the run, and say where it is.
    #[arg(long, requires = "sandbox")]
    pub keep: bool,
    /// With --sandbox: what fills `old` — `sample` (generated data) or a dump's path.
    #[arg(
        long,
        value_name = "DUMP|sample",
        default_value = "sample",
        requires = "sandbox"
    )]
    pub seed: String,
    /// With --sandbox: the version `old` impersonates.
    #[arg(long, value_name = "VERSION", default_value = "1.11", value_parser = parse_version, requires = "sandbox")]
    pub old: PachdVersion,
    /// With --sandbox: the version `new` will run.
    #[arg(long, value_name = "VERSION", default_value = "1.13", value_parser = parse_version, requires = "sandbox")]
    pub new: PachdVersion,
    /// The run journal (default: `.ankus/NAME.journal.json`); a re-run with the same journal
    /// resumes after the last finished step.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Start over: forget the finished steps the journal recorded (a re-run with other
    /// arguments is refused without it). What an earlier attempt left on a cluster is still
    /// put back.
    #[arg(long)]
    pub restart: bool,
    /// Script options.
    #[command(flatten)]
    pub script_options: ScriptOptions,
}

/// `ankus repl`.
#[derive(Debug, Args)]
pub struct ReplArgs {
    /// Start a sandbox and pre-connect `old` and `new`.
    #[arg(long)]
    pub sandbox: bool,
    /// Script options.
    #[command(flatten)]
    pub script_options: ScriptOptions,
}

/// `ankus sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Where the clusters keep their buckets and state, and where `pachctl-config.json` and
    /// `sandbox.json` are written (default: `.ankus/sandbox`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The pachd version the `old` cluster impersonates (1.9 … 1.13).
    #[arg(long, value_name = "VERSION", default_value = "1.11", value_parser = parse_version)]
    pub old: PachdVersion,
    /// The pachd version the `new` cluster impersonates (1.9 … 1.13).
    #[arg(long, value_name = "VERSION", default_value = "1.13", value_parser = parse_version)]
    pub new: PachdVersion,
    /// What fills `old`: a `pachctl extract` dump's path (its bucket is filled from the
    /// dump), or `sample` for generated data.
    #[arg(long, value_name = "DUMP|sample")]
    pub seed: Option<String>,
    /// Leave namespace `new` empty until a pachd Deployment is applied there (the manifests
    /// are written to DIR/new-pachd.yaml), as a migration's "deploy the new cluster" step
    /// expects.
    #[arg(long)]
    pub no_new: bool,
}

/// Parses a pachd version such as `1.11` or `1.13.4`.
fn parse_version(text: &str) -> Result<PachdVersion, String> {
    text.parse::<PachdVersion>().map_err(|err| err.to_string())
}

/// `ankus scripts ...`.
#[derive(Debug, Subcommand)]
pub enum ScriptsAction {
    /// List the bundled scripts and stdlib modules.
    List,
    /// Print a script's source (as it would run, overrides included).
    Show {
        /// The script name.
        name: String,
    },
    /// Write the bundled scripts and stdlib into DIR/scripts and DIR/stdlib for editing.
    Eject {
        /// The directory (created if missing; existing files are never overwritten).
        dir: PathBuf,
    },
}

/// `ankus backup ...`.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Print what a backup holds (repos, branch heads, pipelines, jobs, objects, auth).
    Inspect {
        /// A path, `-` for stdin, or an object-store URL.
        source: String,
    },
    /// Decode every record and check framing, checksums, relations and the manifest.
    Verify {
        /// A path, `-` for stdin, or an object-store URL.
        source: String,
    },
}

/// `ankus docs --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DocsFormat {
    /// A Markdown reference.
    Markdown,
    /// Rhai's function metadata as JSON.
    Json,
}

/// Parses `KEY=VALUE`, naming what is wrong otherwise.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("'{text}' is not KEY=VALUE (missing '=')"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("'{text}' has an empty KEY"));
    }
    if !key
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        return Err(format!(
            "KEY '{key}' may only hold letters, digits, '_' and '-'"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing_names_the_problem() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("from").unwrap_err().contains("missing '='"));
        assert!(parse_key_value("=x").unwrap_err().contains("empty KEY"));
        assert!(
            parse_key_value("a b=x")
                .unwrap_err()
                .contains("may only hold")
        );
    }

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
