//! `ankus backup inspect | verify SOURCE`.

use crate::backup::inventory::inspect;
use crate::backup::verify::verify;
use crate::backup::{BackupError, Location};
use crate::host::context::OutputMode;

use super::args::BackupAction;
use super::console::Console;

/// Runs `ankus backup ACTION`.
pub fn execute(action: &BackupAction, console: &Console) -> anyhow::Result<u8> {
    match action {
        BackupAction::Inspect { source } => {
            let location = Location::parse(source);
            match inspect(&location) {
                Ok(inventory) => {
                    match console.output {
                        OutputMode::Json => console.out(&serde_json::to_string_pretty(&inventory)?),
                        OutputMode::Text => console.out(&inventory.to_text()),
                    }
                    Ok(super::EXIT_OK)
                }
                Err(error) => fail(console, &location, &error),
            }
        }
        BackupAction::Verify { source } => {
            let location = Location::parse(source);
            match verify(&location) {
                Ok(report) => {
                    match console.output {
                        OutputMode::Json => console.out(&serde_json::to_string_pretty(&report)?),
                        OutputMode::Text => {
                            console.out(&format!(
                                "ok: {} records ({} bytes decompressed, {} stored), every record decodes; manifest {}; sha256 {}",
                                report.inventory.records,
                                report.inventory.bytes,
                                report.source_bytes,
                                report.manifest,
                                report.sha256
                            ));
                            for warning in &report.warnings {
                                console.err(&format!("warning: {warning}"));
                            }
                        }
                    }
                    Ok(super::EXIT_OK)
                }
                Err(error) => fail(console, &location, &error),
            }
        }
    }
}

fn fail(console: &Console, location: &Location, error: &BackupError) -> anyhow::Result<u8> {
    console.err(&format!(
        "error: {}: {}",
        location.display(),
        crate::kind::chain_text(error)
    ));
    Ok(super::EXIT_FAILED)
}
