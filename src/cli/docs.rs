//! `ankus docs`: the reference of every function scripts can call, from Rhai's metadata and
//! the bindings' doc comments.

use super::args::DocsFormat;
use super::console::Console;
use crate::host::docs::function_docs;
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
