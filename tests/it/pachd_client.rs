//! The pachd client against minimal in-test gRPC peers (each serves only the RPCs its test
//! needs, on 127.0.0.1:0), and the `pachd` package through the ankus binary.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ankus::kind::{Kind, Kinded};
use ankus::pachd::codec::RawCodec;
use ankus::pachd::{
    ConnectOptions, ExtractFlags, PachdClient, PachdError, StopStartOptions, Target,
};
use ankus::proto::{admin, auth, pfs, pps, versionpb};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use tonic::Status;

use crate::support::{ankus_bin, temp_dir, write};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// (rpc, authn-token, pach-transaction) per call seen.
type SeenMetadata = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// (authn-token, messages) per Restore call seen.
type SeenRestores = Arc<Mutex<Vec<(Option<String>, Vec<Bytes>)>>>;

/// Adapts a closure to tonic's unary service trait.
struct UnaryFn<F>(F);

impl<Req, Resp, F, Fut> tonic::server::UnaryService<Req> for UnaryFn<F>
where
    F: Fn(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<Result<tonic::Response<Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let fut = (self.0)(request);
        Box::pin(async move { fut.await.map(tonic::Response::new) })
    }
}

/// Adapts a closure returning a fixed list of messages to a server-streaming service.
struct StreamFn<F>(F);

impl<Req, F, Fut> tonic::server::ServerStreamingService<Req> for StreamFn<F>
where
    F: Fn(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<Vec<Result<Bytes, Status>>, Status>> + Send + 'static,
{
    type Response = Bytes;
    type ResponseStream = futures::stream::Iter<std::vec::IntoIter<Result<Bytes, Status>>>;
    type Future = BoxFuture<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let fut = (self.0)(request);
        Box::pin(async move {
            fut.await
                .map(|items| tonic::Response::new(futures::stream::iter(items)))
        })
    }
}

/// Adapts a closure over all received messages (or the error that broke the stream) to a
/// client-streaming service.
struct CollectFn<F>(F);

impl<F, Fut> tonic::server::ClientStreamingService<Bytes> for CollectFn<F>
where
    F: Fn(tonic::metadata::MetadataMap, Result<Vec<Bytes>, Status>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Bytes>>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move {
            let (metadata, _, mut stream) = request.into_parts();
            let mut messages = Ok(Vec::new());
            while let Some(message) = stream.next().await {
                match (message, &mut messages) {
                    (Ok(message), Ok(list)) => list.push(message),
                    (Err(status), _) => {
                        messages = Err(status);
                        break;
                    }
                    (Ok(_), Err(_)) => break,
                }
            }
            handler(metadata, messages).await.map(tonic::Response::new)
        })
    }
}

/// A stand-in pachd: an axum router of gRPC paths; unknown paths answer UNIMPLEMENTED.
struct Stub {
    router: axum::Router,
}

impl Stub {
    fn new() -> Self {
        Stub {
            router: tonic::service::Routes::default().into_axum_router(),
        }
    }

    /// A pachd 1.11.9 with deployment ID `dep-1`.
    fn pachd() -> Self {
        Stub::new().version(1, 11, 9).cluster("dep-1")
    }

    fn unary<Req, Resp, F, Fut>(self, path: &'static str, handler: F) -> Self
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: Fn(tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let route = axum::routing::post(move |request: axum::extract::Request| {
            let handler = handler.clone();
            async move {
                let mut grpc =
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
                grpc.unary(UnaryFn(handler), request).await
            }
        });
        Stub {
            router: self.router.route(path, route),
        }
    }

    fn raw_stream<F, Fut>(self, path: &'static str, handler: F) -> Self
    where
        F: Fn(tonic::Request<Bytes>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Result<Bytes, Status>>, Status>> + Send + 'static,
    {
        let route = axum::routing::post(move |request: axum::extract::Request| {
            let handler = handler.clone();
            async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                grpc.server_streaming(StreamFn(handler), request).await
            }
        });
        Stub {
            router: self.router.route(path, route),
        }
    }

    fn raw_collect<F, Fut>(self, path: &'static str, handler: F) -> Self
    where
        F: Fn(tonic::metadata::MetadataMap, Result<Vec<Bytes>, Status>) -> Fut
            + Clone
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        let route = axum::routing::post(move |request: axum::extract::Request| {
            let handler = handler.clone();
            async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                grpc.client_streaming(CollectFn(handler), request).await
            }
        });
        Stub {
            router: self.router.route(path, route),
        }
    }

    fn version(self, major: u32, minor: u32, micro: u32) -> Self {
        self.unary(
            "/versionpb.API/GetVersion",
            move |_: tonic::Request<()>| async move {
                Ok(versionpb::Version {
                    major,
                    minor,
                    micro,
                    additional: String::new(),
                })
            },
        )
    }

    fn cluster(self, deployment_id: &'static str) -> Self {
        self.unary(
            "/admin.API/InspectCluster",
            move |_: tonic::Request<()>| async move {
                Ok(admin::ClusterInfo {
                    id: "cluster-1".into(),
                    deployment_id: deployment_id.into(),
                })
            },
        )
    }

    async fn start(self) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let routes = tonic::service::Routes::from(self.router);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = signal.await;
                    },
                ),
        );
        Running {
            address,
            _shutdown: shutdown,
        }
    }
}

/// A started stub; dropping it shuts the server down.
struct Running {
    address: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn url(&self) -> String {
        format!("grpc://{}", self.address)
    }
}

fn options(target: Target) -> ConnectOptions {
    let mut options = ConnectOptions::new(target);
    options.env = ankus::pachd::ConfigEnv::default();
    options.retry_delay = Duration::from_millis(5);
    options.call_timeout = Duration::from_secs(20);
    options
}

async fn connect(running: &Running) -> Result<PachdClient, PachdError> {
    PachdClient::connect(options(Target::Address(running.url()))).await
}

fn pipeline_info(name: &str, state: pps::PipelineState, stopped: bool) -> pps::PipelineInfo {
    pps::PipelineInfo {
        pipeline: Some(pps::Pipeline { name: name.into() }),
        state: state as i32,
        stopped,
        transform: Some(pps::Transform {
            image: "ubuntu:16.04".into(),
            cmd: vec!["/bin/bash".into()],
            ..pps::Transform::default()
        }),
        input: Some(pps::Input {
            pfs: Some(pps::PfsInput {
                repo: "left".into(),
                ..pps::PfsInput::default()
            }),
            ..pps::Input::default()
        }),
        ..pps::PipelineInfo::default()
    }
}

fn context_config(dir: &Path, contexts: &str) -> std::path::PathBuf {
    write(
        dir,
        "pachctl-config.json",
        &format!(
            r#"{{"user_id":"u","v2":{{"active_context":"old","contexts":{{{contexts}}},"metrics":false}}}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_reads_the_version_and_cluster() {
    let running = Stub::pachd().start().await;
    let client = connect(&running).await.expect("connects");
    assert_eq!(client.version().to_string(), "1.11.9");
    assert_eq!(client.cluster_info().deployment_id, "dep-1");
    assert_eq!(client.address(), running.url());
    assert!(!client.is_plaintext_remote());
}

#[tokio::test(flavor = "multi_thread")]
async fn pachd_2_is_refused_by_version_and_by_missing_rpc() {
    let running = Stub::new().version(2, 0, 1).cluster("dep-1").start().await;
    let error = connect(&running).await.expect_err("2.x refused");
    assert_eq!(error.kind(), Kind::Invalid);
    assert!(
        error.to_string().contains("pachd 2.0.1 is not supported"),
        "{error}"
    );
    let no_version = Stub::new().cluster("dep-1").start().await;
    let error = connect(&no_version).await.expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("does not implement /versionpb.API/GetVersion"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_id_is_checked_like_pachctl() {
    let running = Stub::pachd().start().await;
    let dir = temp_dir();
    let url = running.url();
    let config = context_config(
        dir.path(),
        &format!(
            r#""match":{{"pachd_address":"{url}","cluster_deployment_id":"dep-1"}},
               "other":{{"pachd_address":"{url}","cluster_deployment_id":"dep-9"}},
               "unset":{{"pachd_address":"{url}"}}"#
        ),
    );
    let connect_to = |name: &str| {
        let mut options = options(Target::Context(name.into()));
        options.config_path = Some(config.clone());
        PachdClient::connect(options)
    };
    let matched = connect_to("match").await.expect("same cluster");
    assert_eq!(matched.context(), Some("match"));
    connect_to("unset")
        .await
        .expect("no id in the context is fine");
    let error = connect_to("other").await.expect_err("wrong cluster");
    assert_eq!(
        error.to_string(),
        format!(
            "verify the cluster at {url}: connected to the wrong cluster (context cluster \
             deployment ID = \"dep-9\" vs reported cluster deployment ID = \"dep-1\")"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_token_goes_on_every_call_and_the_transaction_only_where_pachctl_joins_it() {
    let seen: SeenMetadata = Arc::default();
    let record = |seen: SeenMetadata, rpc: &'static str| {
        move |metadata: &tonic::metadata::MetadataMap| {
            let get = |key: &str| {
                metadata
                    .get(key)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            seen.lock().expect("lock").push((
                rpc.to_owned(),
                get("authn-token"),
                get("pach-transaction"),
            ));
        }
    };
    let on_version = record(seen.clone(), "GetVersion");
    let on_cluster = record(seen.clone(), "InspectCluster");
    let on_list = record(seen.clone(), "ListRepo");
    let on_create = record(seen.clone(), "CreateRepo");
    let running = Stub::new()
        .unary(
            "/versionpb.API/GetVersion",
            move |request: tonic::Request<()>| {
                on_version(request.metadata());
                async {
                    Ok(versionpb::Version {
                        major: 1,
                        minor: 13,
                        micro: 4,
                        additional: String::new(),
                    })
                }
            },
        )
        .unary(
            "/admin.API/InspectCluster",
            move |request: tonic::Request<()>| {
                on_cluster(request.metadata());
                async {
                    Ok(admin::ClusterInfo {
                        id: "c".into(),
                        deployment_id: "d".into(),
                    })
                }
            },
        )
        .unary(
            "/pfs.API/ListRepo",
            move |request: tonic::Request<pfs::ListRepoRequest>| {
                on_list(request.metadata());
                async { Ok(pfs::ListRepoResponse::default()) }
            },
        )
        .unary(
            "/pfs.API/CreateRepo",
            move |request: tonic::Request<pfs::CreateRepoRequest>| {
                on_create(request.metadata());
                async { Ok(()) }
            },
        )
        .start()
        .await;
    let dir = temp_dir();
    let config = context_config(
        dir.path(),
        &format!(
            r#""old":{{"pachd_address":"{}","session_token":"secret-token","active_transaction":"txn-7"}}"#,
            running.url()
        ),
    );
    let mut with_config = options(Target::Active);
    with_config.config_path = Some(config);
    let client = PachdClient::connect(with_config).await.expect("connects");
    assert!(client.list_repos().await.expect("lists").is_empty());
    assert_eq!(
        client.create_repo("joined", "").await.expect("creates"),
        Some("txn-7".to_owned()),
        "create repo says it joined the transaction"
    );
    // Regression: the active transaction went on every call (extract, restore and pipeline
    // stops included); pachctl sends it only with the PFS commands that join transactions.
    let seen = seen.lock().expect("lock").clone();
    let token = Some("secret-token".to_owned());
    assert_eq!(
        seen,
        vec![
            ("GetVersion".to_owned(), token.clone(), None),
            ("InspectCluster".to_owned(), token.clone(), None),
            ("ListRepo".to_owned(), token.clone(), None),
            ("CreateRepo".to_owned(), token, Some("txn-7".to_owned())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_all_runs_width_at_a_time_and_waits_for_paused() {
    const WIDTH: usize = 2;
    let names = ["a", "b", "c", "d", "e"];
    #[derive(Default)]
    struct State {
        stopped: std::collections::BTreeMap<String, usize>,
        paused: std::collections::BTreeSet<String>,
        in_flight: usize,
        max_in_flight: usize,
        started: usize,
    }
    let state: Arc<Mutex<State>> = Arc::default();
    let changed = Arc::new(tokio::sync::Notify::new());
    let (list_state, stop_state, inspect_state) = (state.clone(), state.clone(), state.clone());
    let stop_changed = changed.clone();
    let running = Stub::pachd()
        .unary(
            "/pps.API/ListPipeline",
            move |_: tonic::Request<pps::ListPipelineRequest>| {
                let state = list_state.clone();
                async move {
                    let state = state.lock().expect("lock");
                    Ok(pps::PipelineInfos {
                        pipeline_info: names
                            .iter()
                            .map(|name| {
                                pipeline_info(
                                    name,
                                    pps::PipelineState::PipelineRunning,
                                    state.stopped.contains_key(*name),
                                )
                            })
                            .collect(),
                    })
                }
            },
        )
        .unary(
            "/pps.API/StopPipeline",
            move |request: tonic::Request<pps::StopPipelineRequest>| {
                let state = stop_state.clone();
                let changed = stop_changed.clone();
                async move {
                    let name = request.into_inner().pipeline.expect("pipeline").name;
                    {
                        let mut state = state.lock().expect("lock");
                        state.in_flight += 1;
                        state.started += 1;
                        state.max_in_flight = state.max_in_flight.max(state.in_flight);
                    }
                    changed.notify_waiters();
                    // Hold the first calls until WIDTH of them overlap, so the test proves the
                    // client really runs WIDTH at a time; after that, calls pass at once.
                    loop {
                        let notified = changed.notified();
                        {
                            let state = state.lock().expect("lock");
                            if state.max_in_flight >= WIDTH || state.started == names.len() {
                                break;
                            }
                        }
                        notified.await;
                    }
                    let mut state = state.lock().expect("lock");
                    state.in_flight -= 1;
                    state.stopped.insert(name, 0);
                    Ok(())
                }
            },
        )
        .unary(
            "/pps.API/InspectPipeline",
            move |request: tonic::Request<pps::InspectPipelineRequest>| {
                let state = inspect_state.clone();
                async move {
                    let name = request.into_inner().pipeline.expect("pipeline").name;
                    let mut state = state.lock().expect("lock");
                    let stopped = state.stopped.contains_key(&name);
                    // The real controller pauses a stopped pipeline asynchronously: the first
                    // inspection after the stop still shows RUNNING with stopped=true.
                    let inspections = state.stopped.entry(name.clone()).or_insert(0);
                    *inspections += 1;
                    if stopped && *inspections >= 2 {
                        state.paused.insert(name.clone());
                    }
                    let pipeline_state = if state.paused.contains(&name) {
                        pps::PipelineState::PipelinePaused
                    } else {
                        pps::PipelineState::PipelineRunning
                    };
                    Ok(pipeline_info(&name, pipeline_state, stopped))
                }
            },
        )
        .start()
        .await;
    let client = connect(&running).await.expect("connects");
    let options = StopStartOptions {
        names: None,
        width: WIDTH,
        timeout: Duration::from_secs(60),
        poll: Duration::from_millis(5),
        hook: None,
    };
    let results = tokio::time::timeout(Duration::from_secs(60), client.stop_all(&options))
        .await
        .expect("stop_all finishes (a hang means fewer than WIDTH calls overlapped)")
        .expect("stop_all");
    let summary: Vec<(String, String, bool, Option<String>)> = results
        .iter()
        .map(|r| (r.name.clone(), r.state.clone(), r.skipped, r.error.clone()))
        .collect();
    assert_eq!(
        summary,
        names
            .iter()
            .map(|name| (name.to_string(), "paused".to_owned(), false, None))
            .collect::<Vec<_>>()
    );
    let state = state.lock().expect("lock");
    assert_eq!(state.max_in_flight, WIDTH);
    assert!(
        state.stopped.values().all(|inspections| *inspections >= 2),
        "every pipeline was inspected until it paused: {:?}",
        state.stopped
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pachd_messages_map_to_kinds() {
    let running = Stub::pachd()
        .unary(
            "/pfs.API/InspectRepo",
            |_: tonic::Request<pfs::InspectRepoRequest>| async {
                Err::<pfs::RepoInfo, _>(Status::unknown("repo nope not found"))
            },
        )
        .unary(
            "/pfs.API/CreateRepo",
            |_: tonic::Request<pfs::CreateRepoRequest>| async {
                Err::<(), _>(Status::unknown("repo left already exists"))
            },
        )
        .unary(
            "/pps.API/ListPipeline",
            |_: tonic::Request<pps::ListPipelineRequest>| async {
                Err::<pps::PipelineInfos, _>(Status::unauthenticated(
                    "no authentication token (try logging in)",
                ))
            },
        )
        .unary(
            "/auth.API/WhoAmI",
            |_: tonic::Request<auth::WhoAmIRequest>| async {
                Err::<auth::WhoAmIResponse, _>(Status::unimplemented(
                    "the auth service is not activated",
                ))
            },
        )
        .unary(
            "/auth.API/GetAdmins",
            |request: tonic::Request<auth::GetAdminsRequest>| {
                let has_token = request.metadata().contains_key("authn-token");
                async move {
                    if has_token {
                        Err::<auth::GetAdminsResponse, _>(Status::internal(
                            "GetAdmins must be sent without a token",
                        ))
                    } else {
                        Err(Status::unauthenticated(
                            "no authentication token (try logging in)",
                        ))
                    }
                }
            },
        )
        .start()
        .await;
    let mut with_token = options(Target::Address(running.url()));
    with_token.token = Some("t".into());
    let client = PachdClient::connect(with_token).await.expect("connects");
    let not_found = client.inspect_repo("nope").await.expect_err("missing");
    assert_eq!(not_found.kind(), Kind::NotFound);
    assert_eq!(
        not_found.to_string(),
        "inspect repo \"nope\": repo nope not found"
    );
    let exists = client.create_repo("left", "").await.expect_err("exists");
    assert_eq!(exists.kind(), Kind::AlreadyExists);
    assert_eq!(
        exists.to_string(),
        "create repo \"left\": repo left already exists"
    );
    let unauthenticated = client.list_pipelines().await.expect_err("no token");
    assert_eq!(unauthenticated.kind(), Kind::Unauthenticated);
    let auth_off = client.whoami().await.expect_err("auth off");
    assert!(auth_off.is_auth_not_activated());
    assert!(
        auth_off
            .to_string()
            .ends_with("the auth service is not activated")
    );
    assert!(
        client.is_auth_active().await.expect("decided"),
        "not signed in means active"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_is_retried_for_reads_but_not_for_writes() {
    let list_calls = Arc::new(AtomicUsize::new(0));
    let create_calls = Arc::new(AtomicUsize::new(0));
    let (list_count, create_count) = (list_calls.clone(), create_calls.clone());
    let running = Stub::pachd()
        .unary(
            "/pfs.API/ListRepo",
            move |_: tonic::Request<pfs::ListRepoRequest>| {
                let attempt = list_count.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 2 {
                        Err(Status::unavailable("etcd is restarting"))
                    } else {
                        Ok(pfs::ListRepoResponse {
                            repo_info: vec![pfs::RepoInfo {
                                repo: Some(pfs::Repo {
                                    name: "left".into(),
                                }),
                                ..pfs::RepoInfo::default()
                            }],
                        })
                    }
                }
            },
        )
        .unary(
            "/pfs.API/CreateRepo",
            move |_: tonic::Request<pfs::CreateRepoRequest>| {
                create_count.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Status::unavailable("etcd is restarting")) }
            },
        )
        .start()
        .await;
    let client = connect(&running).await.expect("connects");
    let repos = client.list_repos().await.expect("third attempt succeeds");
    assert_eq!(repos[0].name, "left");
    assert_eq!(list_calls.load(Ordering::SeqCst), 3);
    let error = client.create_repo("x", "").await.expect_err("not retried");
    assert_eq!(error.kind(), Kind::Unavailable);
    assert_eq!(create_calls.load(Ordering::SeqCst), 1);
}

/// Op bytes no re-encoding would reproduce: an unknown field (number 99) inside the op and
/// a non-minimal varint length.
fn odd_ops() -> Vec<Bytes> {
    let known = admin::Op {
        op1_11: Some(admin::Op111 {
            repo: Some(ankus::proto::pfs_1_11::CreateRepoRequest {
                repo: Some(ankus::proto::pfs_1_11::Repo {
                    name: "left".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let mut unknown = known.clone();
    unknown.extend_from_slice(&[0x98, 0x06, 0x01]); // field 99, varint 1
    let padded_varint = vec![0x2a, 0x82, 0x80, 0x00, 0x22, 0x00]; // field 5, length 2 in 3 bytes
    vec![
        Bytes::from(known),
        Bytes::from(unknown),
        Bytes::from(padded_varint),
        Bytes::new(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn extract_yields_each_op_byte_for_byte() {
    let requests: Arc<Mutex<Vec<admin::ExtractRequest>>> = Arc::default();
    let seen = requests.clone();
    let running = Stub::pachd()
        .raw_stream(
            "/admin.API/Extract",
            move |request: tonic::Request<Bytes>| {
                let seen = seen.clone();
                async move {
                    let decoded =
                        admin::ExtractRequest::decode(request.into_inner()).expect("request");
                    let to_url = !decoded.url.is_empty();
                    seen.lock().expect("lock").push(decoded);
                    if to_url {
                        return Ok(Vec::new());
                    }
                    Ok(odd_ops().into_iter().map(Ok).collect())
                }
            },
        )
        .start()
        .await;
    let client = connect(&running).await.expect("connects");
    let flags = ExtractFlags {
        no_objects: true,
        ..ExtractFlags::default()
    };
    let ops: Vec<Bytes> = client
        .extract(&flags)
        .await
        .expect("opens")
        .map(|item| item.expect("op"))
        .collect()
        .await;
    assert_eq!(ops, odd_ops());
    client
        .extract_to_url("s3://bucket/dump", &ExtractFlags::default())
        .await
        .expect("empty stream");
    let requests = requests.lock().expect("lock");
    assert!(requests[0].no_objects && requests[0].url.is_empty());
    assert_eq!(requests[1].url, "s3://bucket/dump");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_sends_exactly_the_given_op_bytes() {
    let received: SeenRestores = Arc::default();
    let seen = received.clone();
    let running = Stub::pachd()
        .raw_collect("/admin.API/Restore", move |metadata, messages| {
            let seen = seen.clone();
            async move {
                let token = metadata
                    .get("authn-token")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                seen.lock().expect("lock").push((token, messages?));
                Ok(Bytes::new())
            }
        })
        .start()
        .await;
    let mut with_token = options(Target::Address(running.url()));
    with_token.token = Some("root-token".into());
    let client = PachdClient::connect(with_token).await.expect("connects");
    let ops = odd_ops();
    client
        .restore(futures::stream::iter(
            ops.clone().into_iter().map(Ok::<_, String>),
        ))
        .await
        .expect("restores");
    client
        .restore_from_url("s3://bucket/dump")
        .await
        .expect("restores from url");
    let received = received.lock().expect("lock");
    let (token, messages) = &received[0];
    assert_eq!(token.as_deref(), Some("root-token"));
    let expected: Vec<Bytes> = ops
        .iter()
        .map(|op| {
            let mut message = vec![0x0a];
            prost::encoding::encode_varint(op.len() as u64, &mut message);
            message.extend_from_slice(op);
            Bytes::from(message)
        })
        .collect();
    assert_eq!(messages, &expected);
    let url_request = admin::RestoreRequest::decode(received[1].1[0].clone()).expect("decodes");
    assert_eq!(url_request.url, "s3://bucket/dump");
    assert_eq!(received[1].1.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_source_failure_aborts_instead_of_finishing() {
    let (outcome_tx, mut outcome_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = Stub::pachd()
        .raw_collect("/admin.API/Restore", move |_, messages| {
            let _ = outcome_tx.send(messages.as_ref().map(Vec::len).map_err(Status::code));
            async { Ok(Bytes::new()) }
        })
        .start()
        .await;
    let client = connect(&running).await.expect("connects");
    let ops = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"\x2a\x00")),
        Err("dump is truncated"),
    ]);
    let error = client.restore(ops).await.expect_err("source failed");
    assert_eq!(
        error.to_string(),
        "read the ops to restore: dump is truncated"
    );
    assert_eq!(error.kind(), Kind::Io);
    let seen_by_pachd = outcome_rx
        .recv()
        .await
        .expect("the server saw the stream end");
    assert!(
        seen_by_pachd.is_err(),
        "pachd must see a broken stream, not a finished restore: {seen_by_pachd:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn put_file_streams_chunks_and_get_file_concatenates() {
    let stored: Arc<Mutex<Vec<pfs::PutFileRequest>>> = Arc::default();
    let seen = stored.clone();
    let running = Stub::pachd()
        .raw_collect("/pfs.API/PutFile", move |_, messages| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().expect("lock");
                for message in messages? {
                    seen.push(pfs::PutFileRequest::decode(message).expect("PutFileRequest"));
                }
                Ok(Bytes::new())
            }
        })
        .raw_stream("/pfs.API/GetFile", |_: tonic::Request<Bytes>| async {
            Ok(["hello ", "world"]
                .iter()
                .map(|chunk| Ok(Bytes::from(chunk.as_bytes().to_vec().encode_to_vec())))
                .collect())
        })
        .start()
        .await;
    let client = connect(&running).await.expect("connects");
    let data = Bytes::from(vec![7u8; 5 << 20]);
    client
        .put_file("images", "master", "/big", data.clone())
        .await
        .expect("puts");
    let stored = stored.lock().expect("lock").clone();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|m| m.value.len() <= 2 << 20));
    let file = stored[0]
        .file
        .clone()
        .expect("first message names the file");
    assert_eq!(file.path, "/big");
    assert_eq!(file.commit.expect("commit").id, "master");
    assert!(stored[1].file.is_none());
    let joined: Vec<u8> = stored.iter().flat_map(|m| m.value.clone()).collect();
    assert_eq!(joined, data.to_vec());
    let text = client
        .get_file("images", "master", "/greeting", 1024)
        .await
        .expect("gets");
    assert_eq!(text.as_ref(), b"hello world");
    let error = client
        .get_file("images", "master", "/greeting", 4)
        .await
        .expect_err("cap");
    assert_eq!(
        error.to_string(),
        "get file images@master:/greeting: larger than the limit of 4 bytes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_address_and_unknown_context_say_what_is_wrong() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let error = PachdClient::connect(options(Target::Address(format!("127.0.0.1:{port}"))))
        .await
        .expect_err("nothing listens");
    assert_eq!(error.kind(), Kind::Unavailable);
    assert!(
        error
            .to_string()
            .starts_with(&format!("connect to pachd at grpc://127.0.0.1:{port}: ")),
        "{error}"
    );
    let dir = temp_dir();
    let config = context_config(
        dir.path(),
        r#""old":{"pachd_address":"grpc://127.0.0.1:1"},"new":{"pachd_address":"grpc://127.0.0.1:2"}"#,
    );
    let mut unknown = options(Target::Context("prod".into()));
    unknown.config_path = Some(config.clone());
    let error = PachdClient::connect(unknown)
        .await
        .expect_err("unknown context");
    assert_eq!(error.kind(), Kind::NotFound);
    assert_eq!(
        error.to_string(),
        format!(
            "find pachctl context \"prod\" in {}: known contexts are new, old",
            config.display()
        )
    );
}

/// Runs `ankus ARGS` in `dir` with `PACH_CONFIG` set, off the async threads.
async fn ankus_with_config(dir: &Path, config: &Path, args: &[&str]) -> crate::support::Outcome {
    let (dir, config) = (dir.to_path_buf(), config.to_path_buf());
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(ankus_bin())
            .args(&args)
            .current_dir(&dir)
            .env("PACH_CONFIG", &config)
            .env_remove("PACH_CONTEXT")
            .env_remove("PACHD_ADDRESS")
            .env_remove("ANKUS_SCRIPTS")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ankus runs")
            .into()
    })
    .await
    .expect("joins")
}

#[tokio::test(flavor = "multi_thread")]
async fn script_lists_pipelines_and_dry_run_stop_records_without_calling_pachd() {
    let stop_calls = Arc::new(AtomicUsize::new(0));
    let count = stop_calls.clone();
    let running = Stub::pachd()
        .unary(
            "/pps.API/ListPipeline",
            |_: tonic::Request<pps::ListPipelineRequest>| async {
                Ok(pps::PipelineInfos {
                    pipeline_info: vec![
                        pipeline_info("sort", pps::PipelineState::PipelineRunning, false),
                        pipeline_info("copy", pps::PipelineState::PipelinePaused, true),
                    ],
                })
            },
        )
        .unary(
            "/pps.API/StopPipeline",
            move |_: tonic::Request<pps::StopPipelineRequest>| {
                count.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .start()
        .await;
    let dir = temp_dir();
    let config = context_config(
        dir.path(),
        &format!(r#""old":{{"pachd_address":"{}"}}"#, running.url()),
    );
    write(
        dir.path(),
        "s.rhai",
        r#"let c = pachd::connect("old");
print(`${c.version()} ${c.context()} ${c.address() == arg("url")}`);
for p in c.pipelines() { print(`${p.name} ${p.state} ${p.stopped} ${p.inputs} ${p.image}`); }
print(c.pipelines()[0].to_map().state);
c.stop_pipeline("sort");
print("done");
"#,
    );
    let url_arg = format!("url={}", running.url());
    let out = ankus_with_config(
        dir.path(),
        &config,
        &["run", "./s.rhai", "--dry-run", "-a", &url_arg],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.lines().take(5).collect::<Vec<_>>(),
        [
            "1.11.9 old true",
            "sort running false [\"left\"] ubuntu:16.04",
            "copy paused true [\"left\"] ubuntu:16.04",
            "running",
            "done",
        ],
        "{out:?}"
    );
    let plan = format!("{}{}", out.stdout, out.stderr);
    assert!(plan.contains("stop_pipeline"), "{out:?}");
    assert!(plan.contains("sort"), "{out:?}");
    assert_eq!(
        stop_calls.load(Ordering::SeqCst),
        0,
        "a dry run never calls StopPipeline"
    );

    let real = ankus_with_config(dir.path(), &config, &["run", "./s.rhai", "-a", &url_arg]).await;
    assert_eq!(real.code, 0, "{real:?}");
    assert_eq!(stop_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn script_sees_error_kinds_for_unknown_context_and_missing_pipeline() {
    let running = Stub::pachd()
        .unary(
            "/pps.API/InspectPipeline",
            |_: tonic::Request<pps::InspectPipelineRequest>| async {
                Err::<pps::PipelineInfo, _>(Status::unknown("pipeline \"gone\" not found"))
            },
        )
        .start()
        .await;
    let dir = temp_dir();
    let config = context_config(
        dir.path(),
        &format!(r#""old":{{"pachd_address":"{}"}}"#, running.url()),
    );
    write(
        dir.path(),
        "s.rhai",
        r#"try { pachd::connect("prod"); } catch (e) { print(`${e.kind}: ${e.message}`); }
let c = pachd::connect("old");
try { c.pipeline("gone"); } catch (e) { print(`${e.kind}: ${e.message}`); }
"#,
    );
    let out = ankus_with_config(dir.path(), &config, &["run", "./s.rhai"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "not_found: find pachctl context \"prod\" in {}: known contexts are old\n\
             not_found: inspect pipeline \"gone\": pipeline \"gone\" not found\n",
            config.display()
        )
    );
}

/// Regression: a pachd that takes the whole Restore stream, answers OK and applies nothing
/// (what pachd 1.9 does with op records it cannot read) made ankus print "restored N ops".
/// The restore now asks the target afterwards and fails, naming what is missing.
#[tokio::test(flavor = "multi_thread")]
async fn restore_that_pachd_accepts_but_does_not_apply_is_an_error() {
    use ankus::backup::Location;
    use ankus::backup::manifest::SourceInfo;
    use ankus::backup::transfer::{
        Progress, RestoreOptions, TransferError, extract_to, restore_from,
    };

    // A real 1.9 dump of a repo with one commit and a pipeline, made by the sandbox.
    let source = crate::faults::serve("1.9.0").await;
    let source_client = PachdClient::connect(options(Target::Address(format!(
        "grpc://{}",
        source.address
    ))))
    .await
    .expect("connects");
    source_client.create_repo("images", "").await.expect("repo");
    source_client
        .put_file("images", "master", "/a.txt", Bytes::from_static(b"hello\n"))
        .await
        .expect("put file");
    let dir = temp_dir();
    let dump = dir.path().join("source.dump");
    extract_to(
        &source_client,
        &ExtractFlags::default(),
        &Location::File(dump.clone()),
        SourceInfo::default(),
        &Progress::default(),
    )
    .await
    .expect("extract");

    let received: SeenRestores = Arc::default();
    let seen = received.clone();
    let running = Stub::new()
        .version(1, 9, 0)
        .cluster("dep-1")
        .raw_collect("/admin.API/Restore", move |_, messages| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push((None, messages?));
                Ok(Bytes::new())
            }
        })
        .unary(
            "/pfs.API/ListRepo",
            |_: tonic::Request<pfs::ListRepoRequest>| async {
                Ok(pfs::ListRepoResponse::default())
            },
        )
        .unary(
            "/pps.API/ListPipeline",
            |_: tonic::Request<pps::ListPipelineRequest>| async {
                Ok(pps::PipelineInfos::default())
            },
        )
        .start()
        .await;
    let client = PachdClient::connect(options(Target::Address(running.url())))
        .await
        .expect("connects");
    let error = restore_from(
        &client,
        &Location::File(dump),
        None,
        &Progress::default(),
        &RestoreOptions::default(),
    )
    .await
    .expect_err("nothing was applied");
    assert!(
        !received.lock().expect("lock")[0].1.is_empty(),
        "the ops were sent"
    );
    assert!(
        matches!(error, TransferError::NotApplied { .. }),
        "{error:?}"
    );
    assert_eq!(error.kind(), Kind::Failed);
    let text = error.to_string();
    assert!(
        text.contains("accepted all")
            && text.contains("did not take effect")
            && text.contains("1 of the dump's 1 repo(s) are missing (images)"),
        "{text}"
    );
}

/// Regression: pachd 1.9.0 fails a StopPipeline now and then with "database not open" (its
/// hashtree cache), and `stop_all` gave up on that pipeline, leaving the run failed with the
/// rest stopped. A failed call is made once more unless it took effect anyway.
#[tokio::test(flavor = "multi_thread")]
async fn stop_all_makes_a_failed_stop_once_more_unless_it_took_effect() {
    // "a": the first call fails and does nothing; "b": the first call fails but took effect.
    let stopped: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let (list_stopped, stop_stopped, inspect_stopped) =
        (stopped.clone(), stopped.clone(), stopped.clone());
    let stop_calls = calls.clone();
    let info = |name: &str, stopped: &std::collections::BTreeSet<String>| {
        let is_stopped = stopped.contains(name);
        let state = if is_stopped {
            pps::PipelineState::PipelinePaused
        } else {
            pps::PipelineState::PipelineRunning
        };
        pipeline_info(name, state, is_stopped)
    };
    let running = Stub::pachd()
        .unary(
            "/pps.API/ListPipeline",
            move |_: tonic::Request<pps::ListPipelineRequest>| {
                let stopped = list_stopped.clone();
                async move {
                    let stopped = stopped.lock().expect("lock");
                    Ok(pps::PipelineInfos {
                        pipeline_info: ["a", "b"].iter().map(|n| info(n, &stopped)).collect(),
                    })
                }
            },
        )
        .unary(
            "/pps.API/InspectPipeline",
            move |request: tonic::Request<pps::InspectPipelineRequest>| {
                let stopped = inspect_stopped.clone();
                async move {
                    let name = request.into_inner().pipeline.expect("pipeline").name;
                    Ok(info(&name, &stopped.lock().expect("lock")))
                }
            },
        )
        .unary(
            "/pps.API/StopPipeline",
            move |request: tonic::Request<pps::StopPipelineRequest>| {
                let (stopped, calls) = (stop_stopped.clone(), stop_calls.clone());
                async move {
                    let name = request.into_inner().pipeline.expect("pipeline").name;
                    let first = {
                        let mut calls = calls.lock().expect("lock");
                        calls.push(name.clone());
                        calls.iter().filter(|called| **called == name).count() == 1
                    };
                    if first && name == "b" {
                        stopped.lock().expect("lock").insert(name);
                        return Err(Status::unknown("database not open"));
                    }
                    if first {
                        return Err(Status::unknown("database not open"));
                    }
                    stopped.lock().expect("lock").insert(name);
                    Ok(())
                }
            },
        )
        .start()
        .await;
    let client = PachdClient::connect(options(Target::Address(running.url())))
        .await
        .expect("connects");
    let options = StopStartOptions {
        poll: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
        ..StopStartOptions::default()
    };
    let mut waits = client.stop_all(&options).await.expect("stop all");
    waits.sort_by(|x, y| x.name.cmp(&y.name));
    let seen: Vec<(&str, &str, Option<&str>)> = waits
        .iter()
        .map(|w| (w.name.as_str(), w.state.as_str(), w.error.as_deref()))
        .collect();
    assert_eq!(seen, [("a", "paused", None), ("b", "paused", None)]);
    let mut calls = calls.lock().expect("lock").clone();
    calls.sort();
    assert_eq!(calls, ["a", "a", "b"], "a is stopped again, b is not");
}
