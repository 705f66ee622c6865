//! Tab completion from the engine's own metadata: global and module functions, methods and
//! properties of the value a variable holds (or a call returns), variables, keywords, context
//! names inside `connect("`, and meta-commands with their arguments.

use std::path::Path;
use std::sync::Arc;

use reedline::{Completer, CompletionResult, Partial, Span, Suggestion};

use super::contexts;
use super::meta;
use super::names::{FnInfo, KEYWORDS, Names};
use crate::host::context::HostCtx;

/// The line editor's completer, rebuilt from a fresh [`Names`] snapshot before each line.
pub struct RhaiCompleter {
    names: Arc<Names>,
    host: Arc<HostCtx>,
}

/// One candidate before it becomes a reedline suggestion.
struct Candidate {
    value: String,
    description: Option<String>,
    signature: Option<String>,
}

impl Candidate {
    fn plain(value: impl Into<String>) -> Self {
        Candidate {
            value: value.into(),
            description: None,
            signature: None,
        }
    }

    fn function(name: &str, info: &FnInfo) -> Self {
        Candidate {
            value: format!("{name}("),
            description: (!info.summary.is_empty()).then(|| info.summary.clone()),
            signature: Some(info.signature.clone()),
        }
    }
}

fn is_ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Where the identifier ending at the end of `text` starts (byte offset).
fn word_start(text: &str) -> usize {
    text.char_indices()
        .rev()
        .take_while(|&(_, ch)| is_ident_char(ch))
        .last()
        .map(|(index, _)| index)
        .unwrap_or(text.len())
}

/// The byte offset of the opening `"` when `text` ends inside a double-quoted string.
fn open_string_start(text: &str) -> Option<usize> {
    let mut open = None;
    let mut escaped = false;
    for (index, ch) in text.char_indices() {
        match (open, ch) {
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(_), '"') if !escaped => open = None,
            (None, '"') => open = Some(index),
            _ => {}
        }
        escaped = false;
    }
    open
}

impl RhaiCompleter {
    /// A completer over `names`; `host` supplies the script directory and config paths.
    pub fn new(names: Arc<Names>, host: Arc<HostCtx>) -> Self {
        RhaiCompleter { names, host }
    }

    /// The candidates at `pos` and the start of the text they replace.
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Candidate>) {
        let before = &line[..pos];
        if before.trim_start().starts_with(':') {
            return self.meta_candidates(before);
        }
        if let Some(quote) = open_string_start(before) {
            let start = quote + 1;
            let opener = before[..quote].trim_end();
            if opener.ends_with("connect(") {
                let options = self.host.options();
                let names = contexts::all(
                    options.pach_config.as_deref(),
                    options.kubeconfig.as_deref(),
                );
                return (start, names.into_iter().map(Candidate::plain).collect());
            }
            return (start, Vec::new());
        }
        let start = word_start(before);
        let head = &before[..start];
        let names = &self.names;
        if let Some(qualifier) = head.strip_suffix("::") {
            let module = &qualifier[word_start(qualifier)..];
            let candidates = names
                .engine
                .modules
                .get(module)
                .into_iter()
                .flatten()
                .map(|(name, info)| Candidate::function(name, info))
                .collect();
            return (start, candidates);
        }
        if let Some(receiver) = head.strip_suffix('.') {
            let Some(type_key) = self.receiver_type(receiver) else {
                return (start, Vec::new());
            };
            let variable_start = word_start(receiver);
            let is_variable = !receiver[..variable_start].ends_with(['.', ':']);
            let mut candidates: Vec<Candidate> = names
                .map_keys
                .get(&receiver[variable_start..])
                .filter(|_| is_variable)
                .into_iter()
                .flatten()
                .map(|key| Candidate::plain(key.clone()))
                .collect();
            candidates.extend(
                names
                    .engine
                    .properties
                    .get(&type_key)
                    .into_iter()
                    .flatten()
                    .map(|(name, info)| Candidate {
                        value: name.clone(),
                        description: (!info.summary.is_empty()).then(|| info.summary.clone()),
                        signature: Some(info.signature.clone()),
                    }),
            );
            candidates.extend(
                names
                    .engine
                    .methods
                    .get(&type_key)
                    .into_iter()
                    .flatten()
                    .map(|(name, info)| Candidate::function(name, info)),
            );
            return (start, candidates);
        }
        let mut candidates: Vec<Candidate> = names
            .vars
            .iter()
            .map(|(name, type_key)| Candidate {
                value: name.clone(),
                description: Some(names.engine.display_name(type_key)),
                signature: None,
            })
            .collect();
        candidates.extend(
            names
                .script_fns
                .iter()
                .map(|name| Candidate::plain(format!("{name}("))),
        );
        candidates.extend(
            names
                .engine
                .globals
                .iter()
                .map(|(name, info)| Candidate::function(name, info)),
        );
        candidates.extend(
            names
                .engine
                .modules
                .keys()
                .map(|module| Candidate::plain(format!("{module}::"))),
        );
        candidates.extend(KEYWORDS.iter().map(|keyword| Candidate::plain(*keyword)));
        (start, candidates)
    }

    /// The type key of the expression before a `.`: a variable, a string or number literal,
    /// a property, or a call whose metadata names its return type.
    fn receiver_type(&self, receiver: &str) -> Option<String> {
        let receiver = receiver.trim_end();
        let names = &self.names;
        match receiver.chars().last()? {
            '"' | '`' => Some("string".to_owned()),
            ']' => None,
            ')' => {
                let open = matching_open(receiver)?;
                let callee_end = &receiver[..open];
                let name_start = word_start(callee_end);
                let name = &callee_end[name_start..];
                let head = &callee_end[..name_start];
                let qualified = head.strip_suffix("::").map(|qualifier| {
                    let module = &qualifier[word_start(qualifier)..];
                    format!("{module}::{name}")
                });
                qualified
                    .and_then(|qualified| names.engine.returns.get(&qualified).cloned())
                    .or_else(|| names.engine.returns.get(name).cloned())
            }
            ch if ch.is_ascii_digit() => {
                let start = word_start(receiver);
                let word = &receiver[start..];
                word.chars()
                    .all(|ch| ch.is_ascii_digit() || ch == '_')
                    .then(|| "int".to_owned())
            }
            ch if is_ident_char(ch) => {
                let start = word_start(receiver);
                let name = &receiver[start..];
                if receiver[..start].ends_with('.') {
                    return names.engine.returns.get(&format!("get${name}")).cloned();
                }
                names.vars.get(name).cloned()
            }
            _ => None,
        }
    }

    fn meta_candidates(&self, before: &str) -> (usize, Vec<Candidate>) {
        let start = before.len() - before.trim_start().len();
        let text = &before[start..];
        let Some((command, rest)) = text.split_once(char::is_whitespace) else {
            let candidates = meta::COMMANDS
                .iter()
                .map(|(name, summary)| Candidate {
                    value: (*name).to_owned(),
                    description: Some((*summary).to_owned()),
                    signature: None,
                })
                .collect();
            return (start, candidates);
        };
        let arg_start =
            before.len() - rest.len() + rest.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let candidates = match command {
            ":run" => meta::script_names(self.host.options().scripts_dir.as_deref())
                .into_iter()
                .map(Candidate::plain)
                .collect(),
            ":help" => {
                let engine = &self.names.engine;
                let mut all: Vec<Candidate> = engine
                    .globals
                    .keys()
                    .map(|name| Candidate::plain(name.clone()))
                    .collect();
                for (module, functions) in &engine.modules {
                    all.extend(
                        functions
                            .keys()
                            .map(|name| Candidate::plain(format!("{module}::{name}"))),
                    );
                }
                all.extend(
                    meta::COMMANDS
                        .iter()
                        .map(|(name, _)| Candidate::plain(*name)),
                );
                all
            }
            ":dry-run" => ["on", "off"].into_iter().map(Candidate::plain).collect(),
            ":load" | ":save" => path_candidates(&before[arg_start..]),
            _ => Vec::new(),
        };
        (arg_start, candidates)
    }
}

/// The byte offset of the `(` matching the `)` that ends `text`.
fn matching_open(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, ch) in text.char_indices().rev() {
        match ch {
            ')' | ']' => depth += 1,
            '(' | '[' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// Files and directories starting with `typed` (a path prefix).
fn path_candidates(typed: &str) -> Vec<Candidate> {
    let (dir, prefix) = match typed.rfind('/') {
        Some(slash) => (&typed[..=slash], &typed[slash + 1..]),
        None => ("", typed),
    };
    let listed = if dir.is_empty() {
        Path::new(".")
    } else {
        Path::new(dir)
    };
    let Ok(entries) = std::fs::read_dir(listed) else {
        return Vec::new();
    };
    let mut candidates: Vec<Candidate> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let is_dir = entry.file_type().ok()?.is_dir();
            name.starts_with(prefix)
                .then(|| Candidate::plain(format!("{dir}{name}{}", if is_dir { "/" } else { "" })))
        })
        .collect();
    candidates.sort_by(|a, b| a.value.cmp(&b.value));
    candidates
}

fn common_prefix<'a>(mut values: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = values.next() else {
        return String::new();
    };
    let mut prefix = first.to_owned();
    for value in values {
        let shared = prefix
            .char_indices()
            .zip(value.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((index, ch), _)| index + ch.len_utf8());
        prefix.truncate(shared);
    }
    prefix
}

impl Completer for RhaiCompleter {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        let pos = pos.min(line.len());
        let (start, candidates) = self.candidates(line, pos);
        let typed = &line[start..pos];
        let span = Span::new(start, pos);
        let mut seen = std::collections::BTreeSet::new();
        let suggestions: Vec<Suggestion> = candidates
            .into_iter()
            .filter(|candidate| candidate.value.starts_with(typed))
            .filter(|candidate| seen.insert(candidate.value.clone()))
            .map(|candidate| Suggestion {
                value: candidate.value,
                description: candidate.description,
                extra: candidate.signature.map(|signature| vec![signature]),
                span,
                append_whitespace: false,
                ..Suggestion::default()
            })
            .collect();
        let prefix = common_prefix(
            suggestions
                .iter()
                .map(|suggestion| suggestion.value.as_str()),
        );
        let partial = (prefix.len() > typed.len()).then_some(Partial {
            span,
            insert: prefix,
        });
        CompletionResult::fresh(suggestions).with_partial(partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::context::HostOptions;
    use crate::repl::names::EngineNames;

    fn completer(vars: &[(&str, &str)]) -> RhaiCompleter {
        let engine = crate::host::engine::metadata_engine();
        let names = Names {
            engine: Arc::new(EngineNames::from_engine(&engine)),
            vars: vars
                .iter()
                .map(|(name, type_key)| ((*name).to_owned(), (*type_key).to_owned()))
                .collect(),
            script_fns: ["my_helper".to_owned()].into_iter().collect(),
            map_keys: [(
                "s".to_owned(),
                vec!["records".to_owned(), "repos".to_owned()],
            )]
            .into_iter()
            .collect(),
        };
        RhaiCompleter::new(Arc::new(names), HostCtx::new(HostOptions::default()))
    }

    fn values(completer: &mut RhaiCompleter, line: &str) -> Vec<String> {
        completer
            .complete(line, line.len())
            .suggestions()
            .iter()
            .map(|suggestion| suggestion.value.clone())
            .collect()
    }

    #[test]
    fn methods_of_a_typed_variable() {
        let mut completer = completer(&[("b", "Backup")]);
        assert_eq!(values(&mut completer, "b.su"), vec!["summary("]);
        let all = values(&mut completer, "let x = b.");
        assert!(all.contains(&"verify(".to_owned()), "{all:?}");
        assert!(all.contains(&"source".to_owned()), "{all:?}");
    }

    #[test]
    fn methods_of_a_call_result_and_string_literals() {
        let mut completer = completer(&[]);
        assert_eq!(
            values(&mut completer, "backup::open(\"x.dump\").ver"),
            vec!["verify("]
        );
        assert!(values(&mut completer, "\"abc\".to_up").contains(&"to_upper(".to_owned()));
    }

    #[test]
    fn module_functions_globals_vars_and_keywords() {
        let mut completer = completer(&[("total", "int")]);
        assert!(values(&mut completer, "backup::o").contains(&"open(".to_owned()));
        assert_eq!(values(&mut completer, "sle"), vec!["sleep("]);
        assert_eq!(values(&mut completer, "tot"), vec!["total"]);
        assert!(values(&mut completer, "my_").contains(&"my_helper(".to_owned()));
        assert!(values(&mut completer, "bac").contains(&"backup::".to_owned()));
        assert!(values(&mut completer, "whi").contains(&"while".to_owned()));
    }

    #[test]
    fn meta_commands_and_their_arguments() {
        let mut completer = completer(&[]);
        assert_eq!(values(&mut completer, ":he"), vec![":help"]);
        assert_eq!(values(&mut completer, ":dry-run o"), vec!["on", "off"]);
        assert!(values(&mut completer, ":help backup::o").contains(&"backup::open".to_owned()));
    }

    #[test]
    fn keys_of_a_map_variable() {
        let mut completer = completer(&[("s", "map")]);
        assert_eq!(values(&mut completer, "s.rec"), vec!["records"]);
        assert!(values(&mut completer, "s.").contains(&"keys(".to_owned()));
    }

    #[test]
    fn context_names_inside_connect_and_script_names_after_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pach = dir.path().join("pach.json");
        std::fs::write(
            &pach,
            r#"{"v2":{"contexts":{"old":{},"new":{},"other":{}}}}"#,
        )
        .expect("write");
        let kube = dir.path().join("kube.yaml");
        std::fs::write(&kube, "contexts:\n- name: kind-old\n").expect("write");
        std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
        std::fs::write(dir.path().join("scripts/migrate.rhai"), "1").expect("write");
        let host = HostCtx::new(HostOptions {
            pach_config: Some(pach),
            kubeconfig: Some(kube),
            scripts_dir: Some(dir.path().to_path_buf()),
            ..HostOptions::default()
        });
        let engine = crate::host::engine::metadata_engine();
        let names = Names {
            engine: Arc::new(EngineNames::from_engine(&engine)),
            vars: Default::default(),
            script_fns: Default::default(),
            map_keys: Default::default(),
        };
        let mut completer = RhaiCompleter::new(Arc::new(names), host);
        assert_eq!(
            values(&mut completer, "let c = pachd::connect(\"o"),
            vec!["old", "other"]
        );
        assert_eq!(
            values(&mut completer, "kube::connect(\"kind"),
            vec!["kind-old"]
        );
        assert!(values(&mut completer, "print(\"o").is_empty());
        assert_eq!(
            values(&mut completer, ":run mig"),
            vec!["migrate", "migrate-1.7-to-1.8", "migrate-1.8-to-1.9"]
        );
        assert_eq!(values(&mut completer, ":run clo"), vec!["clone-bucket"]);
    }

    #[test]
    fn partial_extends_the_common_prefix() {
        let mut completer = completer(&[("b", "Backup")]);
        let result = completer.complete("b.sum", 5);
        let partial = result.partial().expect("partial");
        assert_eq!(partial.insert, "summary(");
        assert_eq!(partial.span, Span::new(2, 5));
        assert!(completer.complete("b.s", 3).partial().is_none());
    }
}
