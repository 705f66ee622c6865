//! Where the CLI writes: stdout for results (a closed pipe ends the process quietly with 0),
//! stderr for logs and errors.

use std::io::Write;
use std::sync::Arc;

use crate::host::context::{OutputMode, Sink, Verbosity};

use super::args::{Cli, OutputFormat};

/// The CLI's two streams and the settings that shape them.
#[derive(Clone)]
pub struct Console {
    /// Text or JSON.
    pub output: OutputMode,
    /// Log level.
    pub verbosity: Verbosity,
}

impl Console {
    /// Settings from the parsed command line.
    pub fn new(cli: &Cli) -> Self {
        Console {
            output: match cli.output {
                OutputFormat::Text => OutputMode::Text,
                OutputFormat::Json => OutputMode::Json,
            },
            verbosity: if cli.quiet {
                Verbosity::Quiet
            } else if cli.verbose > 0 {
                Verbosity::Verbose
            } else {
                Verbosity::Normal
            },
        }
    }

    /// Writes `text` and a newline to stdout.
    pub fn out(&self, text: &str) {
        write_stdout(text);
    }

    /// Writes `text` and a newline to stderr.
    pub fn err(&self, text: &str) {
        write_stderr(text);
    }

    /// The sink scripts' `print` writes to: stdout, or stderr when stdout carries JSON.
    pub fn print_sink(&self) -> Sink {
        match self.output {
            OutputMode::Text => Arc::new(write_stdout),
            OutputMode::Json => Arc::new(write_stderr),
        }
    }

    /// The sink logs write to.
    pub fn log_sink(&self) -> Sink {
        Arc::new(write_stderr)
    }

    /// The sink for a secret shown once to the user (a generated root token): stderr, the
    /// only writer that does not redact.
    pub fn reveal_sink(&self) -> Sink {
        Arc::new(|text: &str| {
            let _ = writeln!(std::io::stderr().lock(), "{}", text.trim_end_matches('\n'));
        })
    }
}

// Every other writer hides the secrets the run has loaded (`crate::redact`).
fn write_stderr(text: &str) {
    let text = crate::redact::redact(text);
    let _ = writeln!(std::io::stderr().lock(), "{}", text.trim_end_matches('\n'));
}

fn write_stdout(text: &str) {
    let text = crate::redact::redact(text);
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{}", text.trim_end_matches('\n')).and_then(|()| stdout.flush());
    if let Err(error) = written
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        // The reader went away (`ankus ... | head`): that is success, as in ripgrep.
        std::process::exit(0);
    }
}
