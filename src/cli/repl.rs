//! `ankus repl`: builds the host for an interactive session and hands over to `repl/`.

use std::collections::BTreeMap;

use crate::host::context::HostCtx;
use crate::host::engine::build_engine;

use super::args::{Cli, ReplArgs};
use super::console::Console;
use super::run::{cancel_on_ctrl_c, host_options, limits};

/// Runs `ankus repl`.
pub fn execute(cli: &Cli, repl_args: &ReplArgs, console: &Console) -> anyhow::Result<u8> {
    let mut options = host_options(cli, &repl_args.script_options, BTreeMap::new(), console);
    let sandbox = if repl_args.sandbox {
        let setup = super::sandbox::TemporarySetup {
            seed: "sample".into(),
            old: crate::sandbox::pachd::PachdVersion::v1_11(),
            new: crate::sandbox::pachd::PachdVersion::v1_13(),
            deploy_new: true,
            wanted: Vec::new(),
        };
        Some(super::sandbox::start_temporary(&mut options, &setup)?)
    } else {
        None
    };
    let host = HostCtx::new(options);
    cancel_on_ctrl_c(&host);
    let engine = build_engine(&host, &limits(&repl_args.script_options));
    let mut prelude = crate::repl::Prelude::default();
    if let Some(sandbox) = &sandbox {
        let mut lines = vec![format!("sandbox in {}", sandbox.dir().display())];
        // `new` is a reserved word in Rhai, so the new cluster's variable is `new_`.
        for (name, var, kube_name) in [("old", "old", "k_old"), ("new", "new_", "k_new")] {
            let connected = engine.eval::<rhai::Dynamic>(&format!("pachd::connect(\"{name}\")"));
            let kube = engine.eval::<rhai::Dynamic>(&format!("kube::connect(\"{name}\")"));
            match (connected, kube) {
                (Ok(pachd), Ok(kube)) => {
                    lines.push(format!(
                        "  {var:<6} pachd {}  |  {kube_name}: kube context {name}",
                        engine
                            .eval::<String>(&format!(
                                "pachd::connect(\"{name}\").version().to_string()"
                            ))
                            .unwrap_or_default()
                    ));
                    prelude.vars.push((var.to_owned(), pachd));
                    prelude.vars.push((kube_name.to_owned(), kube));
                }
                (Err(error), _) | (_, Err(error)) => {
                    lines.push(format!("  {name}: not connected ({error})"))
                }
            }
        }
        lines.push("  try: old.pipelines()   new_.version()   old.repos()   k_old.service(\"pachd\")   :help pachd::connect".into());
        prelude.banner = lines.join("\n");
    }
    crate::repl::run(&host, engine, prelude)
}
