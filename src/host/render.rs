//! Renders script errors for people: the innermost message, file:line:column, the source line
//! with a caret, and the call stack, each cause once.

use rhai::{EvalAltResult, ParseError, Position};

use super::error::HostError;

/// Whether output to a stream may be coloured: it is a terminal and `NO_COLOR` is not set to
/// a non-empty value (<https://no-color.org>). The one rule for the console, the tracing
/// output and the REPL.
pub fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Finds the text of a source by the name errors carry.
pub trait SourceLookup {
    /// The full text of `name`, if known.
    fn text(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> SourceLookup for F {
    fn text(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn frame(lookup: &dyn SourceLookup, source: &str, position: Position) -> String {
    let (Some(line), Some(column)) = (position.line(), position.position()) else {
        return format!("  --> {source}\n");
    };
    let mut text = format!("  --> {source}:{line}:{column}\n");
    if let Some(body) = lookup.text(source)
        && let Some(code) = body.lines().nth(line.saturating_sub(1))
    {
        let gutter = line.to_string().len();
        let caret_at: usize = code
            .chars()
            .take(column.saturating_sub(1))
            .map(|ch| if ch == '\t' { 4 } else { 1 })
            .sum();
        let shown = code.replace('\t', "    ");
        text.push_str(&format!("{:gutter$} |\n", ""));
        text.push_str(&format!("{line} | {shown}\n"));
        text.push_str(&format!("{:gutter$} | {:caret_at$}^\n", "", ""));
    }
    text
}

/// Renders a compile error in `source`.
pub fn render_parse_error(error: &ParseError, source: &str, lookup: &dyn SourceLookup) -> String {
    let mut message = format!("error: syntax error: {}\n", error.err_type());
    message.push_str(&frame(lookup, source, error.position()));
    message
}

/// The innermost error's message, without the position Rhai appends.
fn innermost_message(error: &EvalAltResult) -> String {
    if let Some(host_error) = HostError::find(error) {
        return host_error.to_string();
    }
    if let Some(message) = super::engine::limit_message(error) {
        return message;
    }
    match error {
        EvalAltResult::ErrorRuntime(value, _) => format!("script error: {value}"),
        EvalAltResult::ErrorTerminated(_, _) => "interrupted".to_owned(),
        other => {
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(cut) if text.ends_with(')') => text[..cut].to_owned(),
                _ => text,
            }
        }
    }
}

/// Renders a runtime error raised while running `source`.
pub fn render_eval_error(error: &EvalAltResult, source: &str, lookup: &dyn SourceLookup) -> String {
    // Walk the call chain from the outside in; each frame's inner error is positioned in the
    // called function's source.
    let mut calls: Vec<(String, String, Position)> = Vec::new();
    let mut current = error;
    let mut current_source = source.to_owned();
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(name, callee_source, inner, position) => {
                calls.push((
                    format!("in call to '{name}'"),
                    current_source.clone(),
                    *position,
                ));
                if !callee_source.is_empty() {
                    current_source = callee_source.clone();
                }
                current = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, position) => {
                calls.push((
                    format!("in module '{name}'"),
                    current_source.clone(),
                    *position,
                ));
                current = inner;
            }
            _ => break,
        }
    }
    let mut text = format!("error: {}\n", innermost_message(current));
    text.push_str(&frame(lookup, &current_source, current.position()));
    if !calls.is_empty() {
        text.push_str("call stack (innermost last):\n");
        for (what, caller_source, position) in &calls {
            match (position.line(), position.position()) {
                (Some(line), Some(column)) => {
                    text.push_str(&format!("  {what} at {caller_source}:{line}:{column}\n"))
                }
                _ => text.push_str(&format!("  {what} in {caller_source}\n")),
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_error_shows_file_line_column_and_caret() {
        let engine = rhai::Engine::new();
        let script = "let a = 1;\nlet b = a + missing_fn(2);\n";
        let mut ast = engine.compile(script).expect("compiles");
        ast.set_source("demo.rhai");
        let error = engine.eval_ast::<rhai::Dynamic>(&ast).expect_err("fails");
        let lookup = |name: &str| (name == "demo.rhai").then(|| script.to_owned());
        let text = render_eval_error(&error, "demo.rhai", &lookup);
        assert!(text.contains("Function not found: missing_fn"), "{text}");
        assert!(text.contains("--> demo.rhai:2:13"), "{text}");
        assert!(text.contains("2 | let b = a + missing_fn(2);"), "{text}");
        assert!(text.contains("  |             ^"), "{text}");
    }

    #[test]
    fn error_inside_function_lists_the_call_stack() {
        let engine = rhai::Engine::new();
        let script = "fn boom() {\n  throw \"bad\";\n}\nboom();\n";
        let mut ast = engine.compile(script).expect("compiles");
        ast.set_source("s.rhai");
        let error = engine.eval_ast::<rhai::Dynamic>(&ast).expect_err("fails");
        let lookup = |_: &str| Some(script.to_owned());
        let text = render_eval_error(&error, "s.rhai", &lookup);
        assert!(text.starts_with("error: script error: bad\n"), "{text}");
        assert!(text.contains("--> s.rhai:2:3"), "{text}");
        assert!(text.contains("in call to 'boom' at s.rhai:4:1"), "{text}");
    }
}
