//! The `pachd` package: connect to a pachd 1.x by pachctl context or address and work with
//! its pipelines, repos, branches, commits and files as typed values. Mutations pass the
//! dry-run gate. Extract and restore bindings belong with the backup format (they connect
//! `PachdClient::extract`/`restore` to it) and are not here.

use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, CustomType, Dynamic, Map, NativeCallContext, TypeBuilder};

use crate::host::context::HostCtx;
use crate::host::convert::from_json;
use crate::host::error::{BindingResult, script_error, script_fail};
use crate::kind::Kind;
use crate::pachd::{self, PachdClient, PachdError};

/// Largest file `get_file`/`get_file_bytes` read into memory.
pub const GET_FILE_LIMIT: u64 = 64 << 20;

/// A connection to one pachd, as scripts hold it.
#[derive(Clone, Debug)]
pub struct Pachd {
    client: PachdClient,
}

impl Pachd {
    /// Wraps a connected client.
    pub fn new(client: PachdClient) -> Self {
        Pachd { client }
    }

    /// The client underneath (for other bindings, e.g. backup's extract/restore).
    pub fn client(&self) -> &PachdClient {
        &self.client
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "pachd {} at {}",
            self.client.version(),
            self.client.address()
        );
        if let Some(context) = self.client.context() {
            text.push_str(&format!(" (context {context})"));
        }
        text
    }
}

impl CustomType for Pachd {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("Pachd")
            .with_fn("to_string", |pachd: &mut Pachd| pachd.describe())
            .with_fn("to_debug", |pachd: &mut Pachd| {
                format!("Pachd({})", pachd.describe())
            });
    }
}

fn to_script_map<T: serde::Serialize>(model: &T) -> Map {
    serde_json::to_value(model)
        .ok()
        .map(|json| from_json(&json))
        .and_then(|value| value.try_cast::<Map>())
        .unwrap_or_default()
}

/// Declares a script-facing value for a model type: readonly getters for the listed fields,
/// `to_string` (the model's Display), `to_debug` and `to_map` (the model's serde shape).
macro_rules! typed_value {
    ($wrapper:ident, $name:literal, $model:ty, [$($field:ident),* $(,)?]) => {
        #[doc = concat!("A `", $name, "` as scripts see it: readonly getters, `to_string`, `to_debug`, `to_map`.")]
        #[derive(Clone, Debug)]
        pub struct $wrapper {
            model: $model,
            map: Map,
        }

        impl $wrapper {
            /// Wraps a model value.
            pub fn new(model: $model) -> Self {
                let map = to_script_map(&model);
                $wrapper { model, map }
            }

            /// The model value.
            pub fn model(&self) -> &$model {
                &self.model
            }
        }

        impl CustomType for $wrapper {
            fn build(mut builder: TypeBuilder<Self>) {
                builder.with_name($name).with_comments(&[concat!(
                    "/// A ", $name, " returned by the `pachd` package (readonly)."
                )]);
                $(
                    builder
                        .with_get(stringify!($field), |value: &mut Self| {
                            value.map.get(stringify!($field)).cloned().unwrap_or(Dynamic::UNIT)
                        })
                        .and_comments(&[concat!(
                            "/// The `", stringify!($field), "` of a ", $name, "."
                        )]);
                )*
                builder
                    .with_fn("to_string", |value: &mut Self| value.model.to_string())
                    .and_comments(&[
                        concat!("/// A one-line description of a ", $name, "."),
                        "///",
                        "/// ```rhai",
                        "/// print(value.to_string());",
                        "/// ```",
                    ])
                    .with_fn("to_debug", |value: &mut Self| {
                        format!("{}({})", $name, value.model)
                    })
                    .and_comments(&[
                        concat!("/// The ", $name, " for debugging output."),
                        "///",
                        "/// ```rhai",
                        "/// debug(value);",
                        "/// ```",
                    ])
                    .with_fn("to_map", |value: &mut Self| value.map.clone())
                    .and_comments(&[
                        concat!("/// Every field of a ", $name, " as a map (what JSON output shows)."),
                        "///",
                        "/// ```rhai",
                        "/// let m = value.to_map();",
                        "/// ```",
                    ]);
            }
        }
    };
}

typed_value!(
    PipelineValue,
    "Pipeline",
    pachd::Pipeline,
    [
        name,
        state,
        stopped,
        image,
        cmd,
        inputs,
        parallelism,
        parallelism_coefficient,
        created,
        last_job_state,
        job_counts,
        version,
        output_branch,
        description,
        reason
    ]
);
typed_value!(
    RepoValue,
    "Repo",
    pachd::Repo,
    [name, description, size_bytes, created, branches]
);
typed_value!(
    BranchValue,
    "Branch",
    pachd::Branch,
    [repo, name, head, provenance]
);
typed_value!(
    CommitValue,
    "Commit",
    pachd::Commit,
    [
        repo,
        id,
        branch,
        parent,
        started,
        finished,
        size_bytes,
        description,
        origin,
        provenance
    ]
);
typed_value!(
    FileInfoValue,
    "FileInfo",
    pachd::FileInfo,
    [repo, commit, path, file_type, size_bytes, committed, hash]
);
typed_value!(
    VersionValue,
    "Version",
    pachd::Version,
    [major, minor, micro, additional]
);

/// Registers the typed values with `engine`.
pub fn register_types(engine: &mut rhai::Engine) {
    engine
        .build_type::<Pachd>()
        .build_type::<PipelineValue>()
        .build_type::<RepoValue>()
        .build_type::<BranchValue>()
        .build_type::<CommitValue>()
        .build_type::<FileInfoValue>()
        .build_type::<VersionValue>();
}

/// Runs a client future on the host runtime with the default deadline and converts its error.
fn run<T>(
    call: &NativeCallContext,
    fut: impl std::future::Future<Output = Result<T, PachdError>>,
) -> BindingResult<T> {
    let host = HostCtx::of(call)?;
    let position = call.call_position();
    host.block_on(fut, position)?
        .map_err(|error| script_error(error, position))
}

/// Like [`run`] without the host deadline, for calls bounded by their own timeouts.
fn run_unbounded<T>(
    call: &NativeCallContext,
    fut: impl std::future::Future<Output = Result<T, PachdError>>,
) -> BindingResult<T> {
    let host = HostCtx::of(call)?;
    let position = call.call_position();
    host.block_on_for(fut, None, position)?
        .map_err(|error| script_error(error, position))
}

/// What pachctl prints after a command it ran inside the active transaction, and what that
/// means for the script.
fn joined_message(action: &str, transaction: &str) -> String {
    format!(
        "{action}: added to transaction {transaction} (the context's active transaction; it \
         takes effect when the transaction is finished)"
    )
}

fn invalid(call: &NativeCallContext, message: impl Into<String>) -> Box<rhai::EvalAltResult> {
    script_fail(Kind::Invalid, message, call.call_position())
}

fn check_keys(
    call: &NativeCallContext,
    map: &Map,
    what: &str,
    allowed: &[&str],
) -> BindingResult<()> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(
                call,
                format!(
                    "{what} takes no option '{key}' (known: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn string_option(call: &NativeCallContext, map: &Map, key: &str) -> BindingResult<Option<String>> {
    match map.get(key) {
        None => Ok(None),
        Some(value) if value.is_unit() => Ok(None),
        Some(value) if value.is_string() => Ok(Some(value.to_string())),
        Some(value) => Err(invalid(
            call,
            format!("option '{key}' must be a string, not {}", value.type_name()),
        )),
    }
}

fn seconds_option(
    call: &NativeCallContext,
    map: &Map,
    key: &str,
) -> BindingResult<Option<Duration>> {
    let seconds = match map.get(key) {
        None => return Ok(None),
        Some(value) if value.is_unit() => return Ok(None),
        Some(value) => {
            if let Some(int) = value.clone().try_cast::<rhai::INT>() {
                int as f64
            } else if let Some(float) = value.clone().try_cast::<rhai::FLOAT>() {
                float
            } else {
                return Err(invalid(
                    call,
                    format!(
                        "option '{key}' must be a number of seconds, not {}",
                        value.type_name()
                    ),
                ));
            }
        }
    };
    if !(0.0..=604_800.0).contains(&seconds) {
        return Err(invalid(
            call,
            format!("option '{key}' must be 0 to 604800 seconds, not {seconds}"),
        ));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

fn int_option(
    call: &NativeCallContext,
    map: &Map,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
) -> BindingResult<Option<i64>> {
    match map.get(key) {
        None => Ok(None),
        Some(value) if value.is_unit() => Ok(None),
        Some(value) => match value.clone().try_cast::<rhai::INT>() {
            Some(int) if range.contains(&int) => Ok(Some(int)),
            _ => Err(invalid(
                call,
                format!(
                    "option '{key}' must be an integer from {} to {}, not {value}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

fn bool_option(call: &NativeCallContext, map: &Map, key: &str) -> BindingResult<Option<bool>> {
    match map.get(key) {
        None => Ok(None),
        Some(value) if value.is_unit() => Ok(None),
        Some(value) => value.as_bool().map(Some).map_err(|_| {
            invalid(
                call,
                format!("option '{key}' must be true or false, not {value}"),
            )
        }),
    }
}

fn connect_with(call: &NativeCallContext, options: ConnectRequest) -> BindingResult<Pachd> {
    let host = HostCtx::of(call)?;
    let mut connect = pachd::ConnectOptions::new(options.target);
    connect.config_path = host.options().pach_config.clone();
    connect.kubeconfig = host.options().kubeconfig.clone();
    connect.token = options.token;
    connect.call_timeout = options.timeout.unwrap_or(host.options().call_timeout);
    if let Some(limit) = options.connect_timeout {
        connect.connect_timeout = limit;
    }
    if let Some(retries) = options.retries {
        connect.retries = retries;
    }
    let client = run(call, async move { PachdClient::connect(connect).await })?;
    if client.is_plaintext_remote() {
        host.warn(&format!(
            "pachd at {} is reached over plaintext gRPC: tokens and data cross the network \
             unencrypted (use grpcs:// to encrypt)",
            client.address()
        ));
    }
    host.debug(&format!(
        "connected to pachd {} at {}",
        client.version(),
        client.address()
    ));
    Ok(Pachd::new(client))
}

struct ConnectRequest {
    target: pachd::Target,
    token: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    retries: Option<u32>,
}

impl ConnectRequest {
    fn for_target(target: pachd::Target) -> Self {
        ConnectRequest {
            target,
            token: None,
            timeout: None,
            connect_timeout: None,
            retries: None,
        }
    }
}

fn stop_start_options(
    call: &NativeCallContext,
    map: &Map,
    what: &str,
) -> BindingResult<pachd::StopStartOptions> {
    check_keys(call, map, what, &["width", "timeout", "poll", "names"])?;
    let mut options = pachd::StopStartOptions::default();
    if let Some(names) = map.get("names") {
        let Some(list) = names.clone().try_cast::<Array>() else {
            return Err(invalid(
                call,
                format!("{what}: names must be an array of pipeline names"),
            ));
        };
        options.names = Some(list.iter().map(|name| name.to_string()).collect());
    }
    if let Some(width) = int_option(call, map, "width", 1..=256)? {
        options.width = width as usize;
    }
    if let Some(timeout) = seconds_option(call, map, "timeout")? {
        options.timeout = timeout;
    }
    if let Some(poll) = seconds_option(call, map, "poll")? {
        options.poll = poll.max(Duration::from_millis(10));
    }
    // Rehearsals (`-a hold_at=stop:NAME:after`) stop the run between two pipelines.
    let host = HostCtx::of(call)?;
    if host.hold_at().is_some() {
        options.hook = Some(pachd::ChangeHook(std::sync::Arc::new(move |point| {
            let host = host.clone();
            Box::pin(async move { host.hold(&point).await })
        })));
    }
    Ok(options)
}

/// Stops or starts every pipeline; in a dry run records one plan entry per pipeline that
/// would change and returns the states they would reach.
fn change_all(
    call: &NativeCallContext,
    pachd: &Pachd,
    options: pachd::StopStartOptions,
    stop: ChangeAll,
) -> BindingResult<Array> {
    let host = HostCtx::of(call)?;
    let action = match stop {
        ChangeAll::Stop => "stop_pipeline",
        ChangeAll::Start => "start_pipeline",
    };
    if host.is_dry_run() {
        let client = pachd.client.clone();
        let pipelines = options.select(run(call, async move { client.list_pipelines().await })?);
        let mut out = Array::new();
        for pipeline in pipelines {
            let already = match stop {
                ChangeAll::Stop => pipeline.stopped,
                ChangeAll::Start => !pipeline.stopped,
            };
            let state = if already {
                pipeline.state.clone()
            } else {
                let entry = crate::host::plan::PlanEntry::new(
                    "pachd",
                    action,
                    pipeline.name.clone(),
                )
                .with_details(
                    serde_json::json!({ "pachd": pachd.client.address(), "state": pipeline.state }),
                );
                host.may_change(entry);
                match stop {
                    ChangeAll::Stop => "paused".to_owned(),
                    ChangeAll::Start => "running".to_owned(),
                }
            };
            let mut map = Map::new();
            map.insert("name".into(), pipeline.name.into());
            map.insert("state".into(), state.into());
            map.insert("skipped".into(), already.into());
            out.push(map.into());
        }
        return Ok(out);
    }
    let client = pachd.client.clone();
    let results = run_unbounded(call, async move {
        match stop {
            ChangeAll::Stop => client.stop_all(&options).await,
            ChangeAll::Start => client.start_all(&options).await,
        }
    })?;
    let failures: Vec<&pachd::PipelineWait> = results
        .iter()
        .filter(|result| result.error.is_some())
        .collect();
    if let Some(first) = failures.first() {
        let details: Vec<String> = failures
            .iter()
            .map(|result| {
                format!(
                    "{} ({})",
                    result.name,
                    result.error.as_deref().unwrap_or("")
                )
            })
            .collect();
        return Err(script_fail(
            first.error_kind.unwrap_or(Kind::Failed),
            format!(
                "failed to {} {} of {} pipelines: {}",
                match stop {
                    ChangeAll::Stop => "stop",
                    ChangeAll::Start => "start",
                },
                failures.len(),
                results.len(),
                details.join("; ")
            ),
            call.call_position(),
        ));
    }
    Ok(results
        .iter()
        .map(|result| Dynamic::from_map(to_script_map(result)))
        .collect())
}

#[derive(Clone, Copy)]
enum ChangeAll {
    Stop,
    Start,
}

/// Connect to pachd and work with pipelines, repos, branches, commits and files.
#[export_module]
pub mod pachd_api {
    use super::*;

    /// Connects to pachd. A name without `:` is a pachctl context (from `$PACH_CONFIG`,
    /// `/pachctl/config.json` or `~/.pachyderm/config.json`, or the sandbox's config);
    /// anything else is an address (`grpc://`, `grpcs://`, `http://`, `https://` or
    /// `host:port`; port 30650 by default). Refuses pachd 2.x and a cluster other than the
    /// context's `cluster_deployment_id`. A context with no address (as `pachctl deploy`
    /// writes them) is reached as pachctl reaches it: through a port-forward to a pachd pod,
    /// using the kubeconfig with the context's `cluster_name`, `auth_info` and `namespace`.
    ///
    /// ```rhai
    /// let old = pachd::connect("old");
    /// let lab = pachd::connect("grpc://10.0.0.5:30650");
    /// ```
    #[rhai_fn(return_raw, volatile, name = "connect")]
    pub fn connect_name(call: NativeCallContext, name_or_address: &str) -> BindingResult<Pachd> {
        connect_with(
            &call,
            ConnectRequest::for_target(pachd::Target::from_name_or_address(name_or_address)),
        )
    }

    /// Connects to pachctl's active context (`$PACH_CONTEXT` or `active_context`), with
    /// `$PACHD_ADDRESS` overriding its address, as pachctl does.
    ///
    /// ```rhai
    /// let c = pachd::connect();
    /// ```
    #[rhai_fn(return_raw, volatile, name = "connect")]
    pub fn connect_active(call: NativeCallContext) -> BindingResult<Pachd> {
        connect_with(&call, ConnectRequest::for_target(pachd::Target::Active))
    }

    /// Connects with options: `context` (a pachctl context), `address` (overrides the
    /// context's), `token` (replaces the context's session token), `timeout` (seconds per
    /// call), `connect_timeout` (seconds), `retries` (of reads on UNAVAILABLE).
    ///
    /// ```rhai
    /// let c = pachd::connect(#{ context: "new", token: arg("token"), timeout: 30 });
    /// ```
    #[rhai_fn(return_raw, volatile, name = "connect")]
    pub fn connect_options(call: NativeCallContext, options: Map) -> BindingResult<Pachd> {
        check_keys(
            &call,
            &options,
            "pachd::connect",
            &[
                "context",
                "address",
                "token",
                "timeout",
                "connect_timeout",
                "retries",
            ],
        )?;
        let context = string_option(&call, &options, "context")?;
        let address = string_option(&call, &options, "address")?;
        let target = match (context, address) {
            (Some(context), Some(address)) => pachd::Target::ContextAt { context, address },
            (Some(context), None) => pachd::Target::Context(context),
            (None, Some(address)) => pachd::Target::Address(address),
            (None, None) => pachd::Target::Active,
        };
        let request = ConnectRequest {
            target,
            token: string_option(&call, &options, "token")?,
            timeout: seconds_option(&call, &options, "timeout")?,
            connect_timeout: seconds_option(&call, &options, "connect_timeout")?,
            retries: int_option(&call, &options, "retries", 0..=100)?.map(|n| n as u32),
        };
        connect_with(&call, request)
    }

    /// The server version seen when connecting.
    ///
    /// ```rhai
    /// let v = c.version();  print(`${v} (minor ${v.minor})`);
    /// ```
    #[rhai_fn(global)]
    pub fn version(pachd: &mut Pachd) -> VersionValue {
        VersionValue::new(pachd.client.version().clone())
    }

    /// The cluster's ID and deployment ID (InspectCluster).
    ///
    /// ```rhai
    /// print(c.cluster().deployment_id);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn cluster(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Map> {
        let client = pachd.client.clone();
        let info = run(&call, async move { client.inspect_cluster().await })?;
        Ok(to_script_map(&info))
    }

    /// The qualified address (`grpc://host:port`).
    ///
    /// ```rhai
    /// print(c.address());
    /// ```
    #[rhai_fn(global)]
    pub fn address(pachd: &mut Pachd) -> String {
        pachd.client.address()
    }

    /// The pachctl context name, or `()` when connected by address.
    ///
    /// ```rhai
    /// print(c.context() ?? "by address");
    /// ```
    #[rhai_fn(global, name = "context")]
    pub fn context_name(pachd: &mut Pachd) -> Dynamic {
        pachd
            .client
            .context()
            .map(|name| Dynamic::from(name.to_owned()))
            .unwrap_or(Dynamic::UNIT)
    }

    /// Every pipeline, paused ones included.
    ///
    /// ```rhai
    /// for p in c.pipelines() { print(`${p.name} ${p.state}`); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn pipelines(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Array> {
        let client = pachd.client.clone();
        let list = run(&call, async move { client.list_pipelines().await })?;
        Ok(list
            .into_iter()
            .map(|p| Dynamic::from(PipelineValue::new(p)))
            .collect())
    }

    /// One pipeline (fails with kind `not_found` when there is none).
    ///
    /// ```rhai
    /// let p = c.pipeline("sort");  print(p.inputs);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn pipeline(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<PipelineValue> {
        let client = pachd.client.clone();
        let name = name.to_owned();
        run(&call, async move { client.inspect_pipeline(&name).await }).map(PipelineValue::new)
    }

    /// Stops a pipeline (its `stopped` flag flips at once; `state` becomes `paused` a little
    /// later). Dry run: recorded, not done.
    ///
    /// ```rhai
    /// c.stop_pipeline("sort");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn stop_pipeline(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let entry = crate::host::plan::PlanEntry::new("pachd", "stop_pipeline", name)
            .with_details(serde_json::json!({ "pachd": pachd.client.address() }));
        if !host.may_change(entry) {
            return Ok(());
        }
        let client = pachd.client.clone();
        let name = name.to_owned();
        run(&call, async move { client.stop_pipeline(&name).await })
    }

    /// Starts a stopped pipeline. Dry run: recorded, not done.
    ///
    /// ```rhai
    /// c.start_pipeline("sort");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn start_pipeline(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let entry = crate::host::plan::PlanEntry::new("pachd", "start_pipeline", name)
            .with_details(serde_json::json!({ "pachd": pachd.client.address() }));
        if !host.may_change(entry) {
            return Ok(());
        }
        let client = pachd.client.clone();
        let name = name.to_owned();
        run(&call, async move { client.start_pipeline(&name).await })
    }

    /// Stops every pipeline, 16 at a time, and waits until each is `paused` (up to 300 s
    /// each). Returns `[#{name, state, skipped}]`; fails listing the pipelines that did not
    /// stop. Dry run: one plan entry per pipeline that would be stopped.
    ///
    /// ```rhai
    /// let stopped = c.stop_all();
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "stop_all")]
    pub fn stop_all_default(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Array> {
        change_all(
            &call,
            pachd,
            pachd::StopStartOptions::default(),
            ChangeAll::Stop,
        )
    }

    /// `stop_all` with options: `width` (pipelines at a time), `timeout` (seconds to wait for
    /// each), `poll` (seconds between checks), `names` (only these pipelines).
    ///
    /// ```rhai
    /// c.stop_all(#{ width: 4, timeout: 120 });
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "stop_all")]
    pub fn stop_all_options(
        call: NativeCallContext,
        pachd: &mut Pachd,
        options: Map,
    ) -> BindingResult<Array> {
        let options = stop_start_options(&call, &options, "stop_all")?;
        change_all(&call, pachd, options, ChangeAll::Stop)
    }

    /// Starts every stopped pipeline, 16 at a time, and waits until each is `running` or
    /// `standby`. Pipelines that are not stopped are left alone (`skipped: true`).
    ///
    /// ```rhai
    /// c.start_all();
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "start_all")]
    pub fn start_all_default(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Array> {
        change_all(
            &call,
            pachd,
            pachd::StopStartOptions::default(),
            ChangeAll::Start,
        )
    }

    /// `start_all` with options `width`, `timeout`, `poll` and `names`, as for `stop_all`.
    ///
    /// ```rhai
    /// c.start_all(#{ width: 8 });
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "start_all")]
    pub fn start_all_options(
        call: NativeCallContext,
        pachd: &mut Pachd,
        options: Map,
    ) -> BindingResult<Array> {
        let options = stop_start_options(&call, &options, "start_all")?;
        change_all(&call, pachd, options, ChangeAll::Start)
    }

    /// Every repo.
    ///
    /// ```rhai
    /// for r in c.repos() { print(`${r.name} ${r.size_bytes}`); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn repos(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Array> {
        let client = pachd.client.clone();
        let list = run(&call, async move { client.list_repos().await })?;
        Ok(list
            .into_iter()
            .map(|r| Dynamic::from(RepoValue::new(r)))
            .collect())
    }

    /// One repo.
    ///
    /// ```rhai
    /// print(c.repo("images").branches);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn repo(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<RepoValue> {
        let client = pachd.client.clone();
        let name = name.to_owned();
        run(&call, async move { client.inspect_repo(&name).await }).map(RepoValue::new)
    }

    /// A repo's branches.
    ///
    /// ```rhai
    /// for b in c.branches("images") { print(`${b.name} -> ${b.head}`); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn branches(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
    ) -> BindingResult<Array> {
        let client = pachd.client.clone();
        let repo = repo.to_owned();
        let list = run(&call, async move { client.list_branches(&repo).await })?;
        Ok(list
            .into_iter()
            .map(|b| Dynamic::from(BranchValue::new(b)))
            .collect())
    }

    /// A repo's commits, newest first.
    ///
    /// ```rhai
    /// let all = c.commits("images");
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "commits")]
    pub fn commits_all(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
    ) -> BindingResult<Array> {
        commits_options(call, pachd, repo, Map::new())
    }

    /// A repo's commits with options: `branch` (only those reachable from it) and `number`
    /// (at most this many).
    ///
    /// ```rhai
    /// let last = c.commits("images", #{ branch: "master", number: 5 });
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "commits")]
    pub fn commits_options(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        options: Map,
    ) -> BindingResult<Array> {
        check_keys(&call, &options, "commits", &["branch", "number"])?;
        let branch = string_option(&call, &options, "branch")?;
        let number = int_option(&call, &options, "number", 0..=i64::MAX)?.unwrap_or(0) as u64;
        let client = pachd.client.clone();
        let repo = repo.to_owned();
        let list = run(&call, async move {
            client.list_commits(&repo, branch.as_deref(), number).await
        })?;
        Ok(list
            .into_iter()
            .map(|c| Dynamic::from(CommitValue::new(c)))
            .collect())
    }

    /// One commit by ID, branch or ancestry (`master^`).
    ///
    /// ```rhai
    /// let head = c.commit("images", "master");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn commit(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        id: &str,
    ) -> BindingResult<CommitValue> {
        let client = pachd.client.clone();
        let (repo, id) = (repo.to_owned(), id.to_owned());
        run(
            &call,
            async move { client.inspect_commit(&repo, &id).await },
        )
        .map(CommitValue::new)
    }

    /// The head commit of every branch of every repo: `#{ "repo@branch": commit_id }`.
    ///
    /// ```rhai
    /// let before = c.heads();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn heads(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Map> {
        let client = pachd.client.clone();
        let heads = run(&call, async move { client.heads().await })?;
        Ok(heads
            .into_iter()
            .map(|(key, id)| (key.into(), id.into()))
            .collect())
    }

    /// Creates a repo and returns it. Dry run: recorded, and a new empty repo is returned.
    /// When the context has an active transaction (`pachctl start transaction`), the create
    /// joins it, as with pachctl: the run says so and the repo appears when the transaction is
    /// finished. Nothing else ankus sends joins a transaction.
    ///
    /// ```rhai
    /// c.create_repo("images");
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "create_repo")]
    pub fn create_repo_plain(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<RepoValue> {
        create_repo_options(call, pachd, name, Map::new())
    }

    /// Creates a repo with options: `description`.
    ///
    /// ```rhai
    /// c.create_repo("images", #{ description: "raw uploads" });
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "create_repo")]
    pub fn create_repo_options(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
        options: Map,
    ) -> BindingResult<RepoValue> {
        check_keys(&call, &options, "create_repo", &["description"])?;
        let description = string_option(&call, &options, "description")?.unwrap_or_default();
        let host = HostCtx::of(&call)?;
        let entry = crate::host::plan::PlanEntry::new("pachd", "create_repo", name).with_details(
            serde_json::json!({ "pachd": pachd.client.address(), "description": description }),
        );
        if !host.may_change(entry) {
            return Ok(RepoValue::new(pachd::Repo {
                name: name.to_owned(),
                description,
                size_bytes: 0,
                created: None,
                branches: Vec::new(),
            }));
        }
        let client = pachd.client.clone();
        let repo_name = name.to_owned();
        let joined = run(&call, async move {
            match client.create_repo(&repo_name, &description).await? {
                // Created when the transaction is finished: nothing to inspect yet.
                Some(transaction) => Ok(Err((transaction, description))),
                None => client.inspect_repo(&repo_name).await.map(Ok),
            }
        })?;
        match joined {
            Ok(repo) => Ok(RepoValue::new(repo)),
            Err((transaction, description)) => {
                host.info(&joined_message(
                    &format!("create repo {name}"),
                    &transaction,
                ));
                Ok(RepoValue::new(pachd::Repo {
                    name: name.to_owned(),
                    description,
                    size_bytes: 0,
                    created: None,
                    branches: Vec::new(),
                }))
            }
        }
    }

    /// Deletes a repo. Dry run: recorded, not done.
    ///
    /// ```rhai
    /// c.delete_repo("scratch");
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "delete_repo")]
    pub fn delete_repo_plain(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
    ) -> BindingResult<()> {
        delete_repo_options(call, pachd, name, Map::new())
    }

    /// Deletes a repo with options: `force` (even when others depend on it).
    ///
    /// ```rhai
    /// c.delete_repo("scratch", #{ force: true });
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "delete_repo")]
    pub fn delete_repo_options(
        call: NativeCallContext,
        pachd: &mut Pachd,
        name: &str,
        options: Map,
    ) -> BindingResult<()> {
        check_keys(&call, &options, "delete_repo", &["force"])?;
        let force = bool_option(&call, &options, "force")?.unwrap_or(false);
        let host = HostCtx::of(&call)?;
        let entry = crate::host::plan::PlanEntry::new("pachd", "delete_repo", name)
            .with_details(serde_json::json!({ "pachd": pachd.client.address(), "force": force }));
        if !host.may_change(entry) {
            return Ok(());
        }
        let client = pachd.client.clone();
        let repo_name = name.to_owned();
        if let Some(transaction) =
            run(
                &call,
                async move { client.delete_repo(&repo_name, force).await },
            )?
        {
            host.info(&joined_message(
                &format!("delete repo {name}"),
                &transaction,
            ));
        }
        Ok(())
    }

    /// Writes text to a file on a branch, replacing it (pachd makes the commit). Dry run:
    /// recorded, not done.
    ///
    /// ```rhai
    /// c.put_file("images", "master", "/notes.txt", "hello\n");
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "put_file")]
    pub fn put_file_text(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        branch: &str,
        path: &str,
        text: &str,
    ) -> BindingResult<()> {
        put_file_bytes(
            call,
            pachd,
            repo,
            branch,
            path,
            bytes::Bytes::copy_from_slice(text.as_bytes()),
        )
    }

    /// Writes bytes (a blob) to a file on a branch, replacing it.
    ///
    /// ```rhai
    /// c.put_file("images", "master", "/a.bin", blob(16, 0));
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "put_file")]
    pub fn put_file_blob(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        branch: &str,
        path: &str,
        data: rhai::Blob,
    ) -> BindingResult<()> {
        put_file_bytes(call, pachd, repo, branch, path, bytes::Bytes::from(data))
    }

    /// Reads a file (by commit ID or branch) as text (up to 64 MiB; fails on non-UTF-8).
    ///
    /// ```rhai
    /// let text = c.get_file("images", "master", "/notes.txt");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn get_file(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> BindingResult<String> {
        let data = fetch_file(&call, pachd, repo, commit, path)?;
        String::from_utf8(data).map_err(|_| {
            invalid(
                &call,
                format!("file {repo}@{commit}:{path} is not UTF-8 text; use get_file_bytes"),
            )
        })
    }

    /// Reads a file as a blob (up to 64 MiB).
    ///
    /// ```rhai
    /// let data = c.get_file_bytes("images", "master", "/a.bin");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn get_file_bytes(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> BindingResult<rhai::Blob> {
        fetch_file(&call, pachd, repo, commit, path)
    }

    /// The files and directories at `path` in a commit or branch.
    ///
    /// ```rhai
    /// for f in c.list_file("images", "master", "/") { print(`${f.path} ${f.size_bytes}`); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn list_file(
        call: NativeCallContext,
        pachd: &mut Pachd,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> BindingResult<Array> {
        let client = pachd.client.clone();
        let (repo, commit, path) = (repo.to_owned(), commit.to_owned(), path.to_owned());
        let list = run(&call, async move {
            client.list_file(&repo, &commit, &path).await
        })?;
        Ok(list
            .into_iter()
            .map(|f| Dynamic::from(FileInfoValue::new(f)))
            .collect())
    }

    /// Deletes exactly what a failed restore created, as its error lists it in
    /// `e.details` (`created.pipelines`, then `created.repos`, newest first), with the root
    /// token the restore generated when there is one. Refuses details of another cluster,
    /// or of a restore that could not tell what it created. Dry run: recorded, not done.
    /// Returns `#{ pipelines: [...], repos: [...] }`, what was deleted.
    ///
    /// ```rhai
    /// let c = pachd::connect("new");
    /// try { c.restore("backup.dump"); } catch (e) {
    ///     if e.details != () { c.cleanup_restore(e.details); }
    ///     throw e;
    /// }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn cleanup_restore(
        call: NativeCallContext,
        pachd: &mut Pachd,
        details: Map,
    ) -> BindingResult<Map> {
        let host = HostCtx::of(&call)?;
        let target = details
            .get("target")
            .map(|value| value.to_string())
            .unwrap_or_default();
        if target != pachd.client.address() {
            return Err(invalid(
                &call,
                format!(
                    "these details are of a restore into {target:?}, not {}",
                    pachd.client.address()
                ),
            ));
        }
        let Some(created) = details
            .get("created")
            .and_then(|value| value.clone().try_cast::<Map>())
        else {
            return Err(invalid(
                &call,
                "the failed restore could not tell what it created; nothing was deleted",
            ));
        };
        let names = |key: &str| -> Vec<String> {
            created
                .get(key)
                .and_then(|value| value.clone().try_cast::<Array>())
                .unwrap_or_default()
                .into_iter()
                .rev()
                .map(|name| name.to_string())
                .collect()
        };
        let (pipelines, repos) = (names("pipelines"), names("repos"));
        let client = match details.get("root_token").map(|value| value.to_string()) {
            Some(token) if !token.is_empty() && token != "()" => pachd
                .client
                .with_token(&token)
                .map_err(|error| script_error(error, call.call_position()))?,
            _ => pachd.client.clone(),
        }
        .outside_transaction();
        let mut deleted_pipelines = Array::new();
        for name in pipelines {
            let entry = crate::host::plan::PlanEntry::new("pachd", "delete_pipeline", &name)
                .with_details(serde_json::json!({ "pachd": target, "cleanup": "restore" }));
            if host.may_change(entry) {
                let (client, name) = (client.clone(), name.clone());
                run(
                    &call,
                    async move { client.delete_pipeline(&name, true).await },
                )?;
            }
            deleted_pipelines.push(name.into());
        }
        let mut deleted_repos = Array::new();
        for name in repos {
            // A pipeline's output repo went with its pipeline: pachd deletes a missing repo
            // without a word, so asking again would report it deleted twice.
            if deleted_pipelines
                .iter()
                .any(|pipeline| pipeline.to_string() == name)
            {
                continue;
            }
            let entry = crate::host::plan::PlanEntry::new("pachd", "delete_repo", &name)
                .with_details(serde_json::json!({ "pachd": target, "cleanup": "restore" }));
            if host.may_change(entry) {
                let (client, repo_name) = (client.clone(), name.clone());
                let outcome = host.block_on(
                    async move { client.delete_repo(&repo_name, true).await },
                    call.call_position(),
                )?;
                match outcome {
                    // A pipeline's output repo went with its pipeline.
                    Err(error) if crate::kind::Kinded::kind(&error) == Kind::NotFound => continue,
                    Err(error) => return Err(script_error(error, call.call_position())),
                    Ok(_) => {}
                }
            }
            deleted_repos.push(name.into());
        }
        let mut out = Map::new();
        out.insert("pipelines".into(), deleted_pipelines.into());
        out.insert("repos".into(), deleted_repos.into());
        Ok(out)
    }

    /// Who the session token belongs to: `#{username, is_admin, ttl, cluster_roles}`. Fails
    /// (kind `invalid`, "the auth service is not activated") when auth is off.
    ///
    /// ```rhai
    /// if c.is_auth_active() { print(c.whoami().username); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn whoami(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Map> {
        let client = pachd.client.clone();
        let who = run(&call, async move { client.whoami().await })?;
        Ok(to_script_map(&who))
    }

    /// Whether auth is active (asked without a token, as pachctl does).
    ///
    /// ```rhai
    /// let secured = c.is_auth_active();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn is_auth_active(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<bool> {
        let client = pachd.client.clone();
        run(&call, async move { client.is_auth_active().await })
    }

    /// A repo's ACL: `[#{username, scope}]` (auth must be active).
    ///
    /// ```rhai
    /// for e in c.acl("images") { print(`${e.username}: ${e.scope}`); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn acl(call: NativeCallContext, pachd: &mut Pachd, repo: &str) -> BindingResult<Array> {
        let client = pachd.client.clone();
        let repo = repo.to_owned();
        let entries = run(&call, async move { client.get_acl(&repo).await })?;
        Ok(entries
            .iter()
            .map(|entry| Dynamic::from_map(to_script_map(entry)))
            .collect())
    }

    /// Cluster role bindings (1.11+): `#{ principal: ["super", ...] }`.
    ///
    /// ```rhai
    /// let roles = c.role_bindings();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn role_bindings(call: NativeCallContext, pachd: &mut Pachd) -> BindingResult<Map> {
        let client = pachd.client.clone();
        let bindings = run(&call, async move { client.cluster_role_bindings().await })?;
        Ok(to_script_map(&bindings))
    }
}

fn put_file_bytes(
    call: NativeCallContext,
    pachd: &mut Pachd,
    repo: &str,
    branch: &str,
    path: &str,
    data: bytes::Bytes,
) -> BindingResult<()> {
    let host = HostCtx::of(&call)?;
    let target = format!("{repo}@{branch}:{path}");
    let entry = crate::host::plan::PlanEntry::new("pachd", "put_file", target)
        .with_details(serde_json::json!({ "pachd": pachd.client.address(), "bytes": data.len() }));
    if !host.may_change(entry) {
        return Ok(());
    }
    let client = pachd.client.clone();
    let (repo, branch, path) = (repo.to_owned(), branch.to_owned(), path.to_owned());
    run(&call, async move {
        client.put_file(&repo, &branch, &path, data).await
    })
}

fn fetch_file(
    call: &NativeCallContext,
    pachd: &Pachd,
    repo: &str,
    commit: &str,
    path: &str,
) -> BindingResult<Vec<u8>> {
    let client = pachd.client.clone();
    let (repo, commit, path) = (repo.to_owned(), commit.to_owned(), path.to_owned());
    run(call, async move {
        client.get_file(&repo, &commit, &path, GET_FILE_LIMIT).await
    })
    .map(|data| data.to_vec())
}
