//! The REPL: a session that keeps state across lines, over the same engine `ankus run` uses.

mod session;

pub use session::Session;

use std::io::BufRead;
use std::sync::Arc;

use rhai::Engine;

use crate::host::context::HostCtx;

/// Runs the REPL on stdin until end of input.
pub fn run(host: &Arc<HostCtx>, engine: Engine) -> anyhow::Result<u8> {
    let mut session = Session::new(host.clone(), engine);
    let stdin = std::io::stdin();
    let mut pending = String::new();
    let mut failed = false;
    for line in stdin.lock().lines() {
        let line = line?;
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if session.is_incomplete(&pending) {
            continue;
        }
        let input = std::mem::take(&mut pending);
        match session.eval_line(&input) {
            Ok(Some(shown)) => write_line(&shown),
            Ok(None) => {}
            Err(rendered) => {
                failed = true;
                eprintln!("{}", rendered.trim_end());
            }
        }
        if session.quit_requested() {
            break;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn write_line(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}
