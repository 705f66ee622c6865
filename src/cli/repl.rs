//! `ankus repl`: builds the host for an interactive session and hands over to `repl/`.

use std::collections::BTreeMap;

use crate::host::context::HostCtx;
use crate::host::engine::build_engine;

use super::args::{Cli, ReplArgs};
use super::console::Console;
use super::run::{cancel_on_ctrl_c, host_options, limits};

/// Runs `ankus repl`.
pub fn execute(cli: &Cli, repl_args: &ReplArgs, console: &Console) -> anyhow::Result<u8> {
    let mut options = host_options(cli, &repl_args.script_options, BTreeMap::new(), console);
    let _sandbox = if repl_args.sandbox {
        Some(super::sandbox::start_temporary(&mut options)?)
    } else {
        None
    };
    let host = HostCtx::new(options);
    cancel_on_ctrl_c(&host);
    let engine = build_engine(&host, &limits(&repl_args.script_options));
    // `--sandbox` will pass the pre-connected `old`/`new` and its banner here.
    crate::repl::run(&host, engine, crate::repl::Prelude::default())
}
