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
    engine: Arc<Engine>,
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
            engine: Arc::new(engine),
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

    /// The engine, shared (the line editor's validator parses with it).
    pub fn shared_engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Defines a variable before the first line (the sandbox's `old` and `new`).
    pub fn push_var(&mut self, name: &str, value: Dynamic) {
        self.scope.push_dynamic(name.to_owned(), value);
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
        super::validator::is_incomplete(&self.engine, input)
    }

    /// Evaluates one entry; returns its value, or a rendered error. Successful entries are kept
    /// for `:save`.
    pub fn eval_line(&mut self, input: &str) -> Result<Dynamic, String> {
        if input.trim().is_empty() {
            return Ok(Dynamic::UNIT);
        }
        self.line_number += 1;
        let source_name = format!("<repl:{}>", self.line_number);
        let value = self.eval_source(input, &source_name)?;
        self.history.push(input.to_owned());
        Ok(value)
    }

    /// Evaluates a file's text into the session (`:load`): its functions, imports and
    /// variables stay defined.
    pub fn eval_file(&mut self, path: &std::path::Path) -> Result<Dynamic, String> {
        let text = crate::host::sources::read_text(path)
            .map_err(|error| format!("error: {}", crate::kind::chain_text(&error)))?;
        let value = self.eval_source(&text, &path.display().to_string())?;
        self.history
            .push(format!("// :load {}\n{}", path.display(), text.trim_end()));
        Ok(value)
    }

    fn eval_source(&mut self, input: &str, source_name: &str) -> Result<Dynamic, String> {
        let lookup = |_: &str| Some(input.to_owned());
        let mut ast = self
            .engine
            .compile_with_scope(&self.scope, input)
            .map_err(|error| render_parse_error(&error, source_name, &lookup))?;
        ast.set_source(source_name);
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
                Ok(value)
            }
            Err(error) => {
                self.functions = functions_before;
                Err(render_eval_error(&error, source_name, &lookup))
            }
        }
    }
}
