//! `c.extract(...)`, `c.restore(...)` and `c.extract_pipeline(...)` on pachd connections: the
//! glue between the pachd client's op streams and the backup format.

use rhai::plugin::*;

/// A boolean option, or `default` when it is absent or not a boolean.
fn flag(options: &rhai::Map, name: &str, default: bool) -> bool {
    options
        .get(name)
        .and_then(|value| value.as_bool().ok())
        .unwrap_or(default)
}

/// Extract and restore methods of `Pachd` values.
#[export_module]
pub mod transfer_api {
    use rhai::{Dynamic, Map, NativeCallContext};

    use crate::backup::manifest::SourceInfo;
    use crate::backup::transfer::{Progress, extract_to, restore_from};
    use crate::backup::{Location, Op};
    use crate::bindings::pachd::Pachd;
    use crate::host::context::HostCtx;
    use crate::host::convert::from_json;
    use crate::host::error::{BindingResult, script_error, script_fail};
    use crate::host::plan::PlanEntry;
    use crate::kind::Kind;
    use crate::pachd::ExtractFlags;

    use super::flag;

    /// Extracts the cluster's metadata (and, unless `objects: false`, its objects) into a
    /// dump, as `pachctl extract` does, with a manifest beside it. Options: `to` (a path or
    /// object-store URL, required), `objects`, `repos`, `pipelines`, `auth`, `enterprise`
    /// (all default true). The dump appears only when complete. Returns the summary.
    ///
    /// ```rhai
    /// let c = pachd::connect("old");
    /// let s = c.extract(#{ to: "backup.dump", objects: false });
    /// print(`${s.inventory.records} ops`);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn extract(
        call: NativeCallContext,
        pachd: &mut Pachd,
        options: Map,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let Some(to) = options.get("to").map(|value| value.to_string()) else {
            return Err(script_fail(
                Kind::Usage,
                "extract needs a destination: #{ to: \"backup.dump\" }",
                position,
            ));
        };
        crate::bindings::local_target(&host, &to, position)?;
        let target = Location::parse(&to);
        let flags = ExtractFlags {
            no_objects: !flag(&options, "objects", true),
            no_repos: !flag(&options, "repos", true),
            no_pipelines: !flag(&options, "pipelines", true),
            no_enterprise: !flag(&options, "enterprise", true),
            no_auth: !flag(&options, "auth", true),
        };
        let client = pachd.client().clone();
        let mut flag_map = std::collections::BTreeMap::new();
        for (name, value) in [
            ("objects", !flags.no_objects),
            ("repos", !flags.no_repos),
            ("pipelines", !flags.no_pipelines),
            ("enterprise", !flags.no_enterprise),
            ("auth", !flags.no_auth),
        ] {
            flag_map.insert(name.to_owned(), value);
        }
        let entry =
            PlanEntry::new("pachd", "extract", target.display()).with_details(serde_json::json!({
                "from": client.address(),
                "flags": flag_map,
            }));
        if !host.may_change(entry) {
            let mut plausible = Map::new();
            plausible.insert("location".into(), target.display().into());
            plausible.insert("dry_run".into(), true.into());
            return Ok(Dynamic::from_map(plausible));
        }
        let source = SourceInfo {
            cluster: client
                .context()
                .map(str::to_owned)
                .unwrap_or_else(|| client.address()),
            pachd_version: client.version().to_string(),
            deployment_id: client.cluster_info().deployment_id.clone(),
            flags: flag_map,
        };
        let progress = Progress::default();
        let started = std::time::Instant::now();
        let summary = host
            .block_on_for(
                async move { extract_to(&client, &flags, &target, source, &progress).await },
                None,
                position,
            )?
            .map_err(|error| script_error(error, position))?;
        host.info(&format!(
            "extracted {} ops ({} bytes) to {} in {:.1}s",
            summary.inventory.records,
            summary.bytes,
            summary.location,
            started.elapsed().as_secs_f64()
        ));
        Ok(from_json(
            &serde_json::to_value(&summary).unwrap_or_default(),
        ))
    }

    /// Restores a dump (path, `-` or object-store URL) into the cluster, as `pachctl restore`
    /// does, after verifying the whole dump (framing, checksums, relations, manifest): nothing
    /// is sent when verification fails. A cluster that already has repos is refused unless
    /// `#{ force: true }`; a cluster with auth active needs an admin token. When the dump
    /// activates auth, a fresh root token is sent (as pachctl restore does) and shown once
    /// on the terminal; `#{ root_token: "none" }` sends the connection's token instead. On
    /// failure `e.details` says what the target holds and what this restore created
    /// (`c.cleanup_restore(e.details)` removes it).
    /// `mode: "strict"` (the default) asks the sandbox to validate the whole stream before
    /// applying anything; real pachd ignores it.
    ///
    /// ```rhai
    /// let c = pachd::connect("new");
    /// let r = c.restore("backup.dump", #{});
    /// print(`${r.ops} ops restored`);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn restore(
        call: NativeCallContext,
        pachd: &mut Pachd,
        source: &str,
        options: Map,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        crate::bindings::local_target(&host, source, position)?;
        let location = Location::parse(source);
        let client = pachd.client().clone();
        let force = flag(&options, "force", false);
        let mode = match options.get("mode").map(|value| value.to_string()) {
            None => "strict".to_owned(),
            Some(mode) if mode == "strict" || mode == "lenient" => mode,
            Some(other) => {
                return Err(script_fail(
                    Kind::Invalid,
                    format!("restore mode must be \"strict\" or \"lenient\", not \"{other}\""),
                    position,
                ));
            }
        };
        let restore_options = crate::backup::transfer::RestoreOptions {
            root_token: match options.get("root_token").map(|value| value.to_string()) {
                None => crate::backup::transfer::RootToken::Generate,
                Some(text) if text == "generate" => crate::backup::transfer::RootToken::Generate,
                Some(text) if text == "none" => crate::backup::transfer::RootToken::Keep,
                Some(text) => {
                    return Err(script_fail(
                        Kind::Usage,
                        format!("root_token must be \"generate\" or \"none\", not {text:?}"),
                        position,
                    ));
                }
            },
        };
        let entry = PlanEntry::new("pachd", "restore", client.address())
            .with_details(serde_json::json!({ "from": location.display(), "force": force }));
        if !host.may_change(entry) {
            let mut plausible = Map::new();
            plausible.insert("dry_run".into(), true.into());
            plausible.insert("ops".into(), Dynamic::from(0 as rhai::INT));
            return Ok(Dynamic::from_map(plausible));
        }
        if !force {
            let probe = client.clone();
            let repos = host
                .block_on(async move { probe.list_repos().await }, position)?
                .map_err(|error| script_error(error, position))?;
            if !repos.is_empty() {
                return Err(script_fail(
                    Kind::Invalid,
                    format!(
                        "{} already has {} repo(s) ({}); restore into an empty cluster, or pass #{{ force: true }}",
                        client.address(),
                        repos.len(),
                        repos
                            .iter()
                            .take(5)
                            .map(|repo| repo.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    position,
                ));
            }
        }
        let progress = Progress::default();
        let started = std::time::Instant::now();
        let outcome = host.block_on_for(
            async move {
                restore_from(&client, &location, Some(&mode), &progress, &restore_options).await
            },
            None,
            position,
        )?;
        let root_token = match &outcome {
            Ok(summary) => summary.root_token.as_deref(),
            Err(error) => error.root_token(),
        };
        if let Some(token) = root_token {
            host.reveal(&format!(
                "Generated a new root auth token; this is the only time it is shown. Token: {token}"
            ));
        }
        let summary = outcome.map_err(|error| script_error(error, position))?;
        host.info(&format!(
            "restored {} ops in {:.1}s",
            summary.ops,
            started.elapsed().as_secs_f64()
        ));
        Ok(from_json(
            &serde_json::to_value(&summary).unwrap_or_default(),
        ))
    }

    /// Restores with default options.
    ///
    /// ```rhai
    /// pachd::connect("new").restore("backup.dump");
    /// ```
    #[rhai_fn(global, return_raw, name = "restore")]
    pub fn restore_default(
        call: NativeCallContext,
        pachd: &mut Pachd,
        source: &str,
    ) -> BindingResult<Dynamic> {
        restore(call, pachd, source, Map::new())
    }

    /// One pipeline's spec as pachd's ExtractPipeline returns it (a CreatePipelineRequest
    /// map), as `pachctl extract pipeline` prints it.
    ///
    /// ```rhai
    /// print(pachd::connect("old").extract_pipeline("sort").transform.image);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn extract_pipeline(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<Map> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let client = pachd.client().clone();
        let name = name.to_owned();
        let bytes = host
            .block_on(
                async move { client.extract_pipeline(&name).await },
                position,
            )?
            .map_err(|error| script_error(error, position))?;
        let op = Op::from_record(crate::backup::reader::Record {
            index: 0,
            offset: 0,
            bytes: bytes.to_vec(),
        })
        .map_err(|error| script_error(error, position))?;
        let json = crate::backup::edit::request_json(&op)
            .map_err(|error| script_error(error, position))?;
        Ok(from_json(&json).try_cast::<Map>().unwrap_or_default())
    }
}
