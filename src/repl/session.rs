//! One REPL session's state: the scope, accumulated function definitions and imports, and
//! the lines that succeeded (for `:save`).

use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, Scope};

use crate::host::context::HostCtx;
use crate::host::render::{render_eval_error, render_parse_error};
use crate::host::run::on_script_thread;

/// State kept across REPL lines.
pub struct Session {
    host: Arc<HostCtx>,
    engine: Engine,
    scope: Scope<'static>,
    functions: AST,
    imports: Vec<String>,
    history: Vec<String>,
    line_number: usize,
    quit: bool,
}

impl Session {
    /// A fresh session over `engine`.
    pub fn new(host: Arc<HostCtx>, engine: Engine) -> Self {
        Session {
            host,
            engine,
            scope: Scope::new(),
            functions: AST::empty(),
            imports: Vec::new(),
            history: Vec::new(),
            line_number: 0,
            quit: false,
        }
    }

    /// The engine lines run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The variables defined so far.
    pub fn scope(&self) -> &Scope<'static> {
        &self.scope
    }

    /// The host of this session.
    pub fn host(&self) -> &Arc<HostCtx> {
        &self.host
    }

    /// Whether `:quit` was entered.
    pub fn quit_requested(&self) -> bool {
        self.quit
    }

    /// Marks the session finished.
    pub fn request_quit(&mut self) {
        self.quit = true;
    }

    /// The lines that ran without error, in order.
    pub fn successful_lines(&self) -> &[String] {
        &self.history
    }

    /// The script functions defined so far.
    pub fn functions(&self) -> &AST {
        &self.functions
    }

    /// Whether `input` is an unfinished block, list, call or back-tick string that should
    /// continue on the next line.
    pub fn is_incomplete(&self, input: &str) -> bool {
        is_incomplete(&self.engine, &self.scope, input)
    }

    /// Evaluates one entry; returns the text to show (none for `()`), or a rendered error.
    pub fn eval_line(&mut self, input: &str) -> Result<Option<String>, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        self.line_number += 1;
        let source_name = format!("<repl:{}>", self.line_number);
        let lookup = |_: &str| Some(input.to_owned());
        let mut ast = self
            .engine
            .compile_with_scope(&self.scope, input)
            .map_err(|error| render_parse_error(&error, &source_name, &lookup))?;
        ast.set_source(source_name.as_str());
        // Imports do not survive between lines on their own (statements are dropped), so the
        // earlier import lines run again in front of each new line; modules are cached.
        let imports = self
            .engine
            .compile(self.imports.join("\n"))
            .map_err(|error| render_parse_error(&error, "<repl imports>", &lookup))?;
        let functions_before = self.functions.clone();
        self.functions += ast.clone_functions_only();
        let runnable = imports.merge(&self.functions).merge(&ast);
        self.host.reset_cancel();
        let engine = &self.engine;
        let scope = &mut self.scope;
        let outcome = on_script_thread(|| engine.eval_ast_with_scope::<Dynamic>(scope, &runnable));
        match outcome {
            Ok(value) => {
                for line in input.lines() {
                    if line.trim_start().starts_with("import ") {
                        self.imports.push(line.trim().to_owned());
                    }
                }
                self.history.push(input.to_owned());
                if value.is_unit() {
                    Ok(None)
                } else {
                    Ok(Some(self.show(&value)))
                }
            }
            Err(error) => {
                self.functions = functions_before;
                Err(render_eval_error(&error, &source_name, &lookup))
            }
        }
    }

    /// A value as the REPL shows it: the script-level `to_debug`, which typed objects define.
    pub fn show(&self, value: &Dynamic) -> String {
        let options = rhai::CallFnOptions::new()
            .in_all_namespaces(true)
            .eval_ast(false);
        self.engine
            .call_fn_with_options::<String>(
                options,
                &mut Scope::new(),
                &AST::empty(),
                "to_debug",
                (value.clone(),),
            )
            .unwrap_or_else(|_| value.to_string())
    }
}

/// Asks the parser whether `input` ends before its block, list, call or string does.
pub fn is_incomplete(engine: &Engine, scope: &Scope, input: &str) -> bool {
    let Err(error) = engine.compile_with_scope(scope, input) else {
        return false;
    };
    use rhai::ParseErrorType as E;
    let lines = input.lines().count().max(1);
    let last_line_chars = input
        .lines()
        .last()
        .map(|line| line.chars().count())
        .unwrap_or(0);
    let at_end = error.position().line().unwrap_or(0) >= lines
        && error.position().position().unwrap_or(0) > last_line_chars
        || input.ends_with('\n');
    match error.err_type() {
        E::UnexpectedEOF => true,
        E::MissingToken(_, _) | E::PropertyExpected => at_end,
        E::BadInput(rhai::LexError::UnterminatedString) => input.matches('`').count() % 2 == 1,
        _ => false,
    }
}
