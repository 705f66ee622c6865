//! Running one script to the end: compile, evaluate on a big-stack thread, run deferred
//! cleanups on every exit path, keep the journal, and turn failures into rendered text with an
//! exit code.

use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult};

use super::context::HostCtx;
use super::error::HostError;
use super::journal::Journal;
use super::render::{render_eval_error, render_parse_error};
use super::runtime::SCRIPT_STACK;
use super::sources::{self, Source};
use crate::kind::Kind;

/// A script run that did not succeed, ready to print.
#[derive(Debug)]
pub struct ScriptFailure {
    /// The rendered error, ending in a newline.
    pub rendered: String,
    /// 1 for a failed script, 2 for a usage error, 130 for Ctrl-C.
    pub exit_code: i32,
}

/// Finds source text by the names errors carry: the running script, a file, or a bundled
/// module.
fn lookup_source(script: &Source, script_name: &str, name: &str) -> Option<String> {
    if name == script_name {
        return Some(script.text.clone());
    }
    if let Some(module) = name
        .strip_prefix("<bundled>/stdlib/")
        .and_then(|rest| rest.strip_suffix(".rhai"))
    {
        return sources::bundled_stdlib()
            .iter()
            .find(|(bundled, _)| *bundled == module)
            .map(|(_, text)| (*text).to_owned());
    }
    sources::read_text(Path::new(name)).ok()
}

/// The exit code a runtime error maps to.
pub fn exit_code_of(error: &EvalAltResult) -> i32 {
    let mut current = error;
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
            | EvalAltResult::ErrorInModule(_, inner, _) => current = inner,
            EvalAltResult::ErrorTerminated(_, _) => return 130,
            _ => break,
        }
    }
    match HostError::find(error) {
        Some(host_error) if host_error.kind == Kind::Usage => 2,
        _ => 1,
    }
}

/// Compiles and runs `script`; returns its value, or a rendered failure.
pub fn run_script(
    host: &Arc<HostCtx>,
    engine: &Engine,
    script: &Source,
    journal_path: Option<&Path>,
) -> Result<Dynamic, ScriptFailure> {
    let script_name = script.display_name("scripts");
    let lookup = |name: &str| lookup_source(script, &script_name, name);
    let mut ast = engine
        .compile(&script.text)
        .map_err(|error| ScriptFailure {
            rendered: render_parse_error(&error, &script_name, &lookup),
            exit_code: 1,
        })?;
    ast.set_source(script_name.as_str());

    if let Some(path) = journal_path.filter(|_| !host.is_dry_run()) {
        let journal = Journal::open(path, &script.name).map_err(|error| ScriptFailure {
            rendered: format!("error: {}\n", crate::kind::chain_text(&error)),
            exit_code: 2,
        })?;
        if !journal.steps().is_empty() {
            host.info(&format!(
                "resuming from journal {} ({} step(s) recorded)",
                path.display(),
                journal.steps().len()
            ));
        }
        host.set_journal(Some(journal));
    }

    let outcome = on_script_thread(|| engine.eval_ast::<Dynamic>(&ast));

    // Cleanups run with a fresh token so the Ctrl-C that ended the script does not end them too.
    // They are called with the script's imports evaluated first, so module functions work
    // inside them as they did in the script.
    host.reset_cancel();
    let imports_only = imports_and_functions(&ast);
    for cleanup in host.take_defers() {
        let cleanup_outcome = on_script_thread(|| {
            let options = rhai::CallFnOptions::new().eval_ast(true).rewind_scope(true);
            let arguments: Vec<Dynamic> = cleanup.curry().to_vec();
            engine.call_fn_with_options::<Dynamic>(
                options,
                &mut rhai::Scope::new(),
                &imports_only,
                cleanup.fn_name(),
                arguments,
            )
        });
        if let Err(error) = cleanup_outcome {
            host.error(&format!(
                "deferred cleanup failed:\n{}",
                render_eval_error(&error, &script_name, &lookup)
            ));
        }
    }

    match outcome {
        Ok(value) => {
            let finished = host.with_journal(|journal| journal.map(Journal::finish));
            if let Some(Err(error)) = finished {
                host.warn(&crate::kind::chain_text(&error));
            }
            Ok(value)
        }
        Err(error) => Err(ScriptFailure {
            rendered: render_eval_error(&error, &script_name, &lookup),
            exit_code: exit_code_of(&error),
        }),
    }
}

/// The script's top-level `import` statements and all its functions, without its other
/// statements: what a deferred cleanup needs to run after the script itself has ended.
fn imports_and_functions(ast: &rhai::AST) -> rhai::AST {
    let imports: Vec<rhai::Stmt> = ast
        .statements()
        .iter()
        .filter(|statement| matches!(statement, rhai::Stmt::Import(..)))
        .cloned()
        .collect();
    let mut reduced = rhai::AST::new(imports, ast.shared_lib().clone());
    if let Some(source) = ast.source() {
        reduced.set_source(source);
    }
    reduced
}

/// Runs `work` on a thread with a stack big enough for deep Rhai recursion.
pub fn on_script_thread<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("ankus-script".into())
            .stack_size(SCRIPT_STACK)
            .spawn_scoped(scope, work)
            .expect("a script thread can be started")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
