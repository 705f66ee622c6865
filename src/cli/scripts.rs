//! `ankus scripts list | show | eject`.

use crate::host::sources;

use super::args::{Cli, ScriptsAction};
use super::console::Console;

/// Runs `ankus scripts ACTION`.
pub fn execute(cli: &Cli, action: &ScriptsAction, console: &Console) -> anyhow::Result<u8> {
    match action {
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
            console.out(&found.text);
            Ok(super::EXIT_OK)
        }
        ScriptsAction::Eject { dir } => {
            let written = sources::eject(dir)?;
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
