//! `ankus docs`: the reference of every function scripts can call, from Rhai's metadata and
//! the bindings' doc comments.

use super::args::DocsFormat;
use super::console::Console;
use crate::host::engine::metadata_engine;

/// Runs `ankus docs`; `--output json` is `--format json`.
pub fn execute(format: DocsFormat, console: &Console) -> anyhow::Result<u8> {
    let engine = metadata_engine();
    let json = engine.gen_fn_metadata_to_json(false)?;
    let format = match console.output {
        crate::host::context::OutputMode::Json => DocsFormat::Json,
        crate::host::context::OutputMode::Text => format,
    };
    match format {
        DocsFormat::Json => console.out(&json),
        DocsFormat::Markdown => console.out(&markdown(&serde_json::from_str(&json)?)),
    }
    Ok(super::EXIT_OK)
}

/// One documented function, from the metadata JSON.
pub struct FunctionDoc {
    /// `pachd::connect` or `info`.
    pub qualified_name: String,
    /// The signature as Rhai prints it.
    pub signature: String,
    /// The doc comment, without `///`.
    pub doc: String,
}

/// Every function in the metadata, sorted by qualified name (overloads kept).
pub fn function_docs(metadata: &serde_json::Value) -> Vec<FunctionDoc> {
    let mut docs = Vec::new();
    collect(metadata, "", &mut docs);
    docs.sort_by(|a, b| {
        a.qualified_name
            .cmp(&b.qualified_name)
            .then(a.signature.cmp(&b.signature))
    });
    docs
}

fn collect(node: &serde_json::Value, prefix: &str, docs: &mut Vec<FunctionDoc>) {
    if let Some(functions) = node.get("functions").and_then(|value| value.as_array()) {
        for function in functions {
            let name = function["name"].as_str().unwrap_or_default();
            if name.starts_with("get$") || name.starts_with("set$") || name.starts_with("index$") {
                continue;
            }
            let doc = function["docComments"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(|line| line.as_str())
                        .flat_map(|block| block.lines())
                        .map(|line| {
                            line.trim_start()
                                .trim_start_matches("///")
                                .strip_prefix(' ')
                                .unwrap_or(line.trim_start().trim_start_matches("///"))
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            docs.push(FunctionDoc {
                qualified_name: format!("{prefix}{name}"),
                signature: format!("{prefix}{}", function["signature"].as_str().unwrap_or(name)),
                doc,
            });
        }
    }
    if let Some(modules) = node.get("modules").and_then(|value| value.as_object()) {
        for (module_name, module) in modules {
            collect(module, &format!("{prefix}{module_name}::"), docs);
        }
    }
}

fn markdown(metadata: &serde_json::Value) -> String {
    let mut text = String::from(
        "# ankus script reference\n\nEvery function scripts can call, generated from the bindings.\n",
    );
    let mut section = String::new();
    for function in function_docs(metadata) {
        let namespace = function
            .qualified_name
            .rsplit_once("::")
            .map(|(namespace, _)| namespace.to_owned())
            .unwrap_or_else(|| "global".to_owned());
        if namespace != section {
            text.push_str(&format!("\n## {namespace}\n"));
            section = namespace;
        }
        text.push_str(&format!("\n### `{}`\n\n", function.signature));
        if !function.doc.is_empty() {
            text.push_str(&function.doc);
            text.push('\n');
        }
    }
    text
}
