//! Multi-line input: asks the Rhai parser whether the entry stops before its block, list, call,
//! back-tick string or comment does, in which case the editor continues on the next line.

use std::sync::Arc;

use reedline::{ValidationResult, Validator};
use rhai::Engine;

/// The line editor's validator.
pub struct RhaiValidator {
    engine: Arc<Engine>,
}

impl RhaiValidator {
    /// A validator parsing with `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        RhaiValidator { engine }
    }
}

impl Validator for RhaiValidator {
    fn validate(&self, line: &str) -> ValidationResult {
        if is_incomplete(&self.engine, line) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Complete
        }
    }
}

/// Whether `input` is unfinished. Meta-commands (`:help`) are always complete; `"` strings
/// are single-line in Rhai, so an unterminated one is an error to show, not a continuation.
pub fn is_incomplete(engine: &Engine, input: &str) -> bool {
    if input.trim_start().starts_with(':') {
        return false;
    }
    if input.matches("/*").count() > input.matches("*/").count() {
        return true;
    }
    let Err(error) = engine.compile(input) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_blocks_lists_calls_and_backticks_continue() {
        let engine = Engine::new();
        for input in [
            "fn foo() {",
            "let x = [1, 2",
            "let m = #{ a: 1,",
            "foo(1,",
            "let x = 1 +",
            "let s = `abc",
            "x.",
            "/* comment",
            "fn f(a) {\n  a + 1",
        ] {
            assert!(is_incomplete(&engine, input), "{input:?} should continue");
        }
    }

    #[test]
    fn finished_or_broken_entries_are_complete() {
        let engine = Engine::new();
        for input in [
            "let x = 1;",
            "1 + 2",
            "let s = \"abc",
            "let x = 1; }",
            ":help sleep",
            "fn f(a) {\n  a + 1\n}",
        ] {
            assert!(
                !is_incomplete(&engine, input),
                "{input:?} should be complete"
            );
        }
    }
}
