//! `ankus scripts list | show | eject`.

use serde_json::json;

use crate::host::context::OutputMode;
use crate::host::sources;

use super::args::{Cli, ScriptsAction};
use super::console::Console;

/// Runs `ankus scripts ACTION`.
pub fn execute(cli: &Cli, action: &ScriptsAction, console: &Console) -> anyhow::Result<u8> {
    let json = console.output == OutputMode::Json;
    match action {
        ScriptsAction::List if json => {
            let entries = |kind: &str, sources: &[(&str, &str)]| {
                sources
                    .iter()
                    .map(|(name, text)| json!({ "name": name, "kind": kind, "summary": summary(text) }))
                    .collect::<Vec<_>>()
            };
            let mut all = entries("script", sources::bundled_scripts());
            all.extend(entries("stdlib", sources::bundled_stdlib()));
            console.out(&serde_json::to_string_pretty(&all)?);
            Ok(super::EXIT_OK)
        }
        ScriptsAction::List => {
            console.out("scripts:");
            for (name, text) in sources::bundled_scripts() {
                console.out(&format!("  {name:<24} {}", summary(text)));
            }
            console.out("stdlib modules:");
            for (name, text) in sources::bundled_stdlib() {
                console.out(&format!("  {name:<24} {}", summary(text)));
            }
            Ok(super::EXIT_OK)
        }
        ScriptsAction::Show { name } => {
            let found = sources::find_script(name, cli.scripts.as_deref())?;
            if json {
                console.out(&serde_json::to_string_pretty(&json!({
                    "name": found.name,
                    "source": found.display_name("scripts"),
                    "text": found.text,
                }))?);
            } else {
                console.out(&found.text);
            }
            Ok(super::EXIT_OK)
        }
        ScriptsAction::Eject { dir } => {
            let written = sources::eject(dir)?;
            if json {
                console.out(&serde_json::to_string_pretty(&json!({
                    "dir": dir.display().to_string(),
                    "written": written.iter().map(|path| path.display().to_string()).collect::<Vec<_>>(),
                }))?);
                return Ok(super::EXIT_OK);
            }
            console.out(&format!(
                "wrote {} files under {}",
                written.len(),
                dir.display()
            ));
            console.out(&format!(
                "run an edited copy with: ankus run NAME --scripts {}",
                dir.display()
            ));
            Ok(super::EXIT_OK)
        }
    }
}

/// The first `//!` line of a script: its one-line summary.
fn summary(text: &str) -> &str {
    text.lines()
        .find_map(|line| line.strip_prefix("//!"))
        .map(str::trim)
        .unwrap_or("")
}
