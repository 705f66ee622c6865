//! The REPL: a session that keeps state across lines, over the same engine `ankus run` uses.
//! At a terminal it reads with reedline (completion, highlighting, history, multi-line);
//! with piped stdin it reads plain lines, so scripts and tests can drive it.

mod completer;
mod contexts;
mod display;
mod editor;
mod highlighter;
mod history;
mod meta;
mod names;
mod session;
mod validator;

pub use history::history_path;
pub use session::Session;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use reedline::Signal;
use rhai::{Dynamic, Engine};

use crate::host::context::HostCtx;
use names::{EngineNames, Names};

/// Output at a terminal is cut after this many lines or table rows.
const TERMINAL_LIMIT: usize = 200;

/// What a session starts with besides an empty scope (the sandbox pre-connects `old` and
/// `new` and describes them in the banner).
#[derive(Default)]
pub struct Prelude {
    /// Variables defined before the first line.
    pub vars: Vec<(String, Dynamic)>,
    /// Printed before the first prompt; empty for none.
    pub banner: String,
}

/// Runs the REPL until `:quit`, Ctrl-D or the end of piped input. Returns the exit code.
pub fn run(host: &Arc<HostCtx>, engine: Engine, prelude: Prelude) -> anyhow::Result<u8> {
    if std::io::stdin().is_terminal() {
        return run_terminal(&mut start(host, engine, &prelude), &prelude.banner);
    }
    let outcome = run_piped(
        host,
        engine,
        prelude,
        std::io::stdin().lock(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    match outcome {
        // The reader went away (`ankus repl < x | head`): that is success.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => Ok(other?),
    }
}

fn start(host: &Arc<HostCtx>, engine: Engine, prelude: &Prelude) -> Session {
    let mut session = Session::new(host.clone(), engine);
    for (name, value) in &prelude.vars {
        session.push_var(name, value.clone());
    }
    session
}

fn run_terminal(session: &mut Session, banner: &str) -> anyhow::Result<u8> {
    let engine_names = Arc::new(EngineNames::from_engine(session.engine()));
    let mut editor = editor::build(session.shared_engine());
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    if !banner.is_empty() {
        writeln!(stdout, "{}", banner.trim_end())?;
    }
    writeln!(
        stdout,
        "ankus repl: :help for commands, Tab to complete, Ctrl-D to leave"
    )?;
    loop {
        let names = Arc::new(Names::snapshot(engine_names.clone(), session));
        editor = editor.with_completer(Box::new(completer::RhaiCompleter::new(
            names.clone(),
            session.host().clone(),
        )));
        // NO_COLOR: no syntax colours either.
        if crate::host::render::colour_wanted(true) {
            editor = editor.with_highlighter(Box::new(highlighter::RhaiHighlighter::new(names)));
        }
        match editor.read_line(&editor::ReplPrompt)? {
            Signal::Success(input) => {
                let shown = handle_entry(session, &input, Some(TERMINAL_LIMIT));
                shown.write(&mut stdout, &mut stderr)?;
                if let Err(error) = editor.sync_history() {
                    writeln!(stderr, "warning: history not saved: {error}")?;
                }
                if session.quit_requested() {
                    break;
                }
            }
            Signal::CtrlD => break,
            // Ctrl-C while editing discards the line, as in a shell.
            _ => {}
        }
    }
    Ok(0)
}

/// Reads entries from `input` without a line editor: lines continue while the entry is
/// incomplete. The banner goes to `err` so `out` holds only results (script `print`s go to
/// the host's sink). Returns 1 when any entry failed.
pub fn run_piped(
    host: &Arc<HostCtx>,
    engine: Engine,
    prelude: Prelude,
    input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let session = &mut start(host, engine, &prelude);
    if !prelude.banner.is_empty() {
        writeln!(err, "{}", prelude.banner.trim_end())?;
    }
    let mut pending = String::new();
    let mut failed = false;
    for line in input.lines() {
        let line = line?;
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if session.is_incomplete(&pending) {
            continue;
        }
        let entry = std::mem::take(&mut pending);
        let shown = handle_entry(session, &entry, None);
        failed |= shown.err.is_some();
        shown.write(out, err)?;
        if session.quit_requested() {
            break;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// What one entry printed.
struct Shown {
    out: Option<String>,
    err: Option<String>,
}

impl Shown {
    /// Writes the entry's result and error, with the secrets the session has loaded hidden
    /// (as every other writer of ankus does).
    fn write(self, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<()> {
        if let Some(text) = self.out.filter(|text| !text.is_empty()) {
            writeln!(out, "{}", crate::redact::redact(text.trim_end()))?;
            out.flush()?;
        }
        if let Some(text) = self.err {
            writeln!(err, "{}", crate::redact::redact(text.trim_end()))?;
        }
        Ok(())
    }
}

fn handle_entry(session: &mut Session, input: &str, limit: Option<usize>) -> Shown {
    if input.trim_start().starts_with(':') {
        let output = meta::execute(session, input, limit);
        return Shown {
            out: Some(output.text),
            err: output.error,
        };
    }
    match session.eval_line(input) {
        Ok(value) => Shown {
            out: display::render(session.engine(), &value, limit),
            err: None,
        },
        Err(rendered) => Shown {
            out: None,
            err: Some(rendered),
        },
    }
}
