//! Meta-commands: `:help`, `:vars`, `:fns`, `:load`, `:run`, `:dry-run`, `:plan`, `:save`,
//! `:quit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::Engine;

use super::display;
use super::session::Session;
use crate::host::context::HostCtx;
use crate::host::docs::function_docs;
use crate::host::engine::{Limits, build_engine};
use crate::host::run::run_script;
use crate::host::sources;

/// Every meta-command with a one-line description.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        ":help",
        "[NAME]  a function's doc and example, or this list",
    ),
    (":vars", "the variables defined so far, with their types"),
    (":fns", "the functions defined in this session"),
    (":load", "FILE  evaluate a file into this session"),
    (
        ":run",
        "SCRIPT [KEY=VALUE...]  run a bundled or file script",
    ),
    (":dry-run", "on|off  record changes instead of making them"),
    (":plan", "what the dry run would have changed so far"),
    (
        ":save",
        "FILE  write this session's successful lines as a script",
    ),
    (":quit", "leave the REPL (Ctrl-D too)"),
];

/// What a meta-command printed and whether it failed.
pub struct MetaOutput {
    /// Text for stdout (may be empty).
    pub text: String,
    /// Text for stderr (an error).
    pub error: Option<String>,
}

impl MetaOutput {
    fn text(text: impl Into<String>) -> Self {
        MetaOutput {
            text: text.into(),
            error: None,
        }
    }

    fn error(error: impl Into<String>) -> Self {
        MetaOutput {
            text: String::new(),
            error: Some(error.into()),
        }
    }

    fn from_eval(
        engine: &Engine,
        outcome: Result<rhai::Dynamic, String>,
        limit: Option<usize>,
    ) -> Self {
        match outcome {
            Ok(value) => {
                MetaOutput::text(display::render(engine, &value, limit).unwrap_or_default())
            }
            Err(rendered) => MetaOutput::error(rendered),
        }
    }
}

/// Runs the meta-command on `line` (which starts with `:`).
pub fn execute(session: &mut Session, line: &str, limit: Option<usize>) -> MetaOutput {
    let line = line.trim();
    let (command, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(command, rest)| (command, rest.trim()));
    match command {
        ":help" | ":h" | ":?" => help(session, rest),
        ":vars" => vars(session),
        ":fns" => fns(session),
        ":load" if !rest.is_empty() => {
            let outcome = session.eval_file(Path::new(rest));
            MetaOutput::from_eval(session.engine(), outcome, limit)
        }
        ":run" if !rest.is_empty() => run(session, rest, limit),
        ":dry-run" => dry_run(session.host(), rest),
        ":plan" => MetaOutput::text(session.host().plan().to_table().trim_end()),
        ":save" if !rest.is_empty() => save(session, Path::new(rest)),
        ":quit" | ":q" | ":exit" => {
            session.request_quit();
            MetaOutput::text("")
        }
        ":load" | ":run" | ":save" => MetaOutput::error(format!(
            "error: {command} needs an argument; see :help {command}"
        )),
        _ => MetaOutput::error(format!(
            "error: unknown command {command}; :help lists the commands"
        )),
    }
}

fn help(session: &Session, name: &str) -> MetaOutput {
    if name.is_empty() {
        let mut text = String::from(
            "Enter Rhai statements; variables, functions and imports stay defined.\n\
             Tab completes, Ctrl-R searches history, Alt-Enter inserts a newline,\n\
             Ctrl-C cancels the running line, Ctrl-D leaves.\n\ncommands:\n",
        );
        for (command, summary) in COMMANDS {
            text.push_str(&format!("  {command:<9} {summary}\n"));
        }
        text.push_str("\n:help NAME shows a function's doc, e.g. :help backup::open");
        return MetaOutput::text(text);
    }
    if let Some((command, summary)) = COMMANDS.iter().find(|(command, _)| *command == name) {
        return MetaOutput::text(format!("{command} {summary}"));
    }
    for include_standard in [false, true] {
        let Some(metadata) = session
            .engine()
            .gen_fn_metadata_to_json(include_standard)
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        else {
            continue;
        };
        let matches: Vec<_> = function_docs(&metadata)
            .into_iter()
            .filter(|doc| {
                doc.qualified_name == name || doc.qualified_name.ends_with(&format!("::{name}"))
            })
            .collect();
        if !matches.is_empty() {
            let text = matches
                .iter()
                .map(|doc| {
                    if doc.doc.is_empty() {
                        doc.signature.clone()
                    } else {
                        format!("{}\n\n{}", doc.signature, doc.doc.trim_end())
                    }
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            return MetaOutput::text(text);
        }
    }
    if let Some(function) = session
        .functions()
        .iter_functions()
        .find(|function| function.name == name)
    {
        return MetaOutput::text(format!(
            "fn {}({}) (defined in this session)",
            function.name,
            function.params.join(", ")
        ));
    }
    MetaOutput::error(format!("error: no function or command named {name}"))
}

fn vars(session: &Session) -> MetaOutput {
    let engine = session.engine();
    let mut text = String::new();
    // Newest first, so a shadowed variable shows its current value only.
    let mut entries = BTreeMap::new();
    for (name, constant, value) in session.scope().iter_raw() {
        entries.entry(name).or_insert((constant, value));
    }
    for (name, (constant, value)) in entries {
        let mut preview = display::to_debug(engine, value).replace('\n', " ");
        if preview.chars().count() > 60 {
            preview = format!("{}…", preview.chars().take(59).collect::<String>());
        }
        let type_name = engine.map_type_name(value.type_name());
        let keyword = if constant { "const" } else { "let" };
        text.push_str(&format!("{keyword} {name}: {type_name} = {preview}\n"));
    }
    if text.is_empty() {
        text.push_str("no variables yet");
    }
    MetaOutput::text(text.trim_end())
}

fn fns(session: &Session) -> MetaOutput {
    let mut lines: Vec<String> = session
        .functions()
        .iter_functions()
        .map(|function| format!("fn {}({})", function.name, function.params.join(", ")))
        .collect();
    lines.sort();
    if lines.is_empty() {
        return MetaOutput::text(
            "no functions defined yet (:help lists the built-in ones by name)",
        );
    }
    MetaOutput::text(lines.join("\n"))
}

fn dry_run(host: &HostCtx, setting: &str) -> MetaOutput {
    match setting {
        "on" => {
            host.set_dry_run(true);
            host.clear_plan();
            MetaOutput::text("dry-run on: changes are recorded, not made (:plan shows them)")
        }
        "off" => {
            host.set_dry_run(false);
            MetaOutput::text("dry-run off: changes are made")
        }
        "" => MetaOutput::text(if host.is_dry_run() {
            "dry-run is on"
        } else {
            "dry-run is off"
        }),
        other => MetaOutput::error(format!("error: :dry-run takes on or off, not {other}")),
    }
}

fn limits_of(engine: &Engine) -> Limits {
    Limits {
        max_operations: engine.max_operations(),
        max_call_levels: engine.max_call_levels(),
        max_string_size: engine.max_string_size(),
        max_array_size: engine.max_array_size(),
        max_map_size: engine.max_map_size(),
    }
}

/// `:run SCRIPT [KEY=VALUE...]`: a fresh engine over a child of the session's host that has
/// the given arguments; Ctrl-C and the dry-run plan are shared with the session.
fn run(session: &Session, rest: &str, limit: Option<usize>) -> MetaOutput {
    let mut words = rest.split_whitespace();
    let name = words.next().unwrap_or_default();
    let mut args = BTreeMap::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                args.insert(key.to_owned(), value.to_owned());
            }
            _ => {
                return MetaOutput::error(format!(
                    "error: script arguments are KEY=VALUE, not {word}"
                ));
            }
        }
    }
    let host = session.host();
    let script = match sources::find_script(name, host.options().scripts_dir.as_deref()) {
        Ok(script) => script,
        Err(error) => {
            return MetaOutput::error(format!("error: {}", crate::kind::chain_text(&error)));
        }
    };
    let mut options = host.options().clone();
    options.args = args;
    options.dry_run = host.is_dry_run();
    let child = HostCtx::new(options);
    let engine = build_engine(&child, &limits_of(session.engine()));
    host.reset_cancel();
    let parent_token = host.cancel_token();
    let forward_to = child.clone();
    let forwarder = crate::host::runtime::spawn(async move {
        parent_token.cancelled().await;
        forward_to.cancel();
    });
    let outcome = run_script(&child, &engine, &script, None);
    forwarder.abort();
    if host.is_dry_run() {
        for entry in child.plan().entries() {
            host.may_change(entry.clone());
        }
    }
    match outcome {
        Ok(value) => MetaOutput::text(display::render(&engine, &value, limit).unwrap_or_default()),
        Err(failure) => MetaOutput::error(failure.rendered.trim_end().to_owned()),
    }
}

fn save(session: &Session, path: &Path) -> MetaOutput {
    let mut script = String::new();
    for entry in session.successful_lines() {
        let entry = entry.trim_end();
        script.push_str(entry);
        // Rhai accepts a stray `;` after a block, so every entry can be terminated the same way.
        if !entry.ends_with(';') {
            script.push(';');
        }
        script.push('\n');
    }
    match std::fs::write(path, &script) {
        Ok(()) => MetaOutput::text(format!(
            "saved {} entr{} to {}",
            session.successful_lines().len(),
            if session.successful_lines().len() == 1 {
                "y"
            } else {
                "ies"
            },
            path.display()
        )),
        Err(error) => MetaOutput::error(format!(
            "error: failed to write {}: {error}",
            path.display()
        )),
    }
}

/// Script names `:run` accepts by name: bundled ones and `.rhai` files in the script
/// directories.
pub fn script_names(override_dir: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = sources::bundled_scripts()
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let mut dirs: Vec<PathBuf> = override_dir
        .map(|dir| dir.join("scripts"))
        .into_iter()
        .collect();
    dirs.push(PathBuf::from("scripts"));
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        names.extend(entries.filter_map(Result::ok).filter_map(|entry| {
            let path = entry.path();
            (path.extension()? == "rhai").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        }));
    }
    names.sort();
    names.dedup();
    names
}
