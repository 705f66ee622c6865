//! The command-line edge: parse, resolve into options, dispatch to one file per subcommand,
//! map outcomes to exit codes. Only this module and `repl/` write to stdout.

pub mod args;
pub mod backup;
pub mod console;
pub mod docs;
pub mod logging;
pub mod repl;
pub mod run;
pub mod sandbox;
pub mod scripts;

use std::ffi::OsString;

use clap::Parser;

use args::{Cli, Command};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the script or operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or setup error.
pub const EXIT_USAGE: u8 = 2;

/// Runs the command line `argv` and returns the process exit code.
pub fn run(argv: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            };
            let _ = error.print();
            return code;
        }
    };
    crate::redact::register_environment();
    logging::install(cli.verbose, cli.quiet);
    let console = console::Console::new(&cli);
    let outcome = match &cli.command {
        Command::Completions { .. } | Command::Repl(_)
            if console.output == crate::host::context::OutputMode::Json =>
        {
            Err(anyhow::anyhow!(
                "{} cannot print JSON; drop --output json",
                match &cli.command {
                    Command::Repl(_) => "the REPL (an interactive session)",
                    _ => "completions (a shell script)",
                }
            ))
        }
        Command::Run(run_args) => run::execute(&cli, run_args, &console),
        Command::Repl(repl_args) => repl::execute(&cli, repl_args, &console),
        Command::Backup { action } => backup::execute(action, &console),
        Command::Scripts { action } => scripts::execute(&cli, action, &console),
        Command::Docs { format } => docs::execute(*format, &console),
        Command::Sandbox(sandbox_args) => sandbox::execute(sandbox_args, &console),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let mut buffer = Vec::new();
            clap_complete::generate(*shell, &mut command, "ankus", &mut buffer);
            console.out(&String::from_utf8_lossy(&buffer));
            Ok(EXIT_OK)
        }
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            console.err(&format!("error: {error:#}"));
            EXIT_USAGE
        }
    }
}
