//! Engine assembly, in one place: limits, the error type, every binding package, module
//! resolution and output hooks. Production, the REPL and tests all build engines here.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::{Dynamic, Engine};

use super::context::{HostCtx, HostHandle};
use super::resolver::StdlibResolver;

/// Safety limits, so a runaway script or REPL line stops with a clear message.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Operations per evaluation (0 = unlimited).
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Items in one array.
    pub max_array_size: usize,
    /// Entries in one map.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 500_000_000,
            max_call_levels: 96,
            max_string_size: 256 << 20,
            max_array_size: 10_000_000,
            max_map_size: 10_000_000,
        }
    }
}

/// What a script sees when it runs into one of the [`Limits`]: which limit, and how an
/// operator raises it. `None` for errors that are not a limit.
pub fn limit_message(error: &rhai::EvalAltResult) -> Option<String> {
    use rhai::EvalAltResult;
    let defaults = Limits::default();
    let (what, flag, variable, default) = match error {
        EvalAltResult::ErrorTooManyOperations(_) => (
            "too many operations: the script ran past its operation limit".to_owned(),
            "--max-operations",
            "ANKUS_MAX_OPERATIONS",
            defaults.max_operations.to_string(),
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            "too many nested function calls".to_owned(),
            "--max-call-levels",
            "ANKUS_MAX_CALL_LEVELS",
            defaults.max_call_levels.to_string(),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let what = what.to_ascii_lowercase();
            let (flag, variable, default) = if what.contains("string") {
                (
                    "--max-string-size",
                    "ANKUS_MAX_STRING_SIZE",
                    defaults.max_string_size,
                )
            } else if what.contains("map") {
                (
                    "--max-map-size",
                    "ANKUS_MAX_MAP_SIZE",
                    defaults.max_map_size,
                )
            } else {
                (
                    "--max-array-size",
                    "ANKUS_MAX_ARRAY_SIZE",
                    defaults.max_array_size,
                )
            };
            (
                format!("{what} too large"),
                flag,
                variable,
                default.to_string(),
            )
        }
        _ => return None,
    };
    // Zero turns off every limit but the call depth.
    let unlimited = if flag == "--max-call-levels" {
        ""
    } else {
        ", or 0 for no limit"
    };
    Some(format!(
        "{what} (the {flag} limit, default {default}); raise it with {flag} N or {variable}=N{unlimited}"
    ))
}

/// Builds the engine for a run: every package registered, limits set, cancellation wired to
/// `host`, `print`/`debug` routed to the host's sinks.
pub fn build_engine(host: &Arc<HostCtx>, limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(256, 128);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(256);
    engine.disable_symbol("eval");
    engine.set_fail_on_invalid_map_property(false);

    engine.set_default_tag(Dynamic::from(HostHandle(host.clone())));
    let progress_host = host.clone();
    engine.on_progress(move |_operations| {
        progress_host
            .is_cancelled()
            .then(|| Dynamic::from("interrupted"))
    });
    let print_host = host.clone();
    engine.on_print(move |text| print_host.print(text));
    let debug_host = host.clone();
    engine.on_debug(move |text, source, position| {
        let place = match (source, position.line()) {
            (Some(source), Some(line)) => format!("{source}:{line}: "),
            (None, Some(line)) => format!("line {line}: "),
            _ => String::new(),
        };
        debug_host.info(&format!("{place}{text}"));
    });

    super::error::register(&mut engine);
    crate::bindings::register_all(&mut engine);

    let override_dir: Option<PathBuf> = host.options().scripts_dir.clone();
    engine.set_module_resolver(StdlibResolver::new(override_dir));
    engine
}

/// Builds a throwaway engine with no run attached, for `ankus docs` and the REPL's metadata.
pub fn metadata_engine() -> Engine {
    let host = HostCtx::new(super::context::HostOptions::default());
    build_engine(&host, &Limits::default())
}
