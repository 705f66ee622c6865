//! Faults an S3 endpoint really shows, injected on purpose: a loopback HTTP proxy in front of
//! `s3s-fs` answers some requests with 503 SlowDown or 500 InternalError, drops connections
//! without answering or part-way through a response body, answers late, or not at all. What a
//! user sees: a bucket clone through it completes, verifies, and counts its retries; an object
//! that never stops failing is reported by key, and mirrored deletions are held back.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::store::{ACCESS_KEY, S3Server, SECRET_KEY, ankus_env};
use crate::support::{temp_dir, write};

/// What the proxy does to the requests it sees.
#[derive(Clone)]
pub(crate) enum Plan {
    /// Each request (method and URL) is faulted at most once, so every retry gets through:
    /// one in four of the object and list requests gets a fault, cycling through 503
    /// SlowDown, 500 InternalError, a dropped connection and a short delay; once, a list
    /// request never gets an answer and once a response body breaks off half-way.
    Scheduled,
    /// Every request for this key (in any bucket) gets 503 SlowDown.
    AlwaysFail(String),
    /// A list request asking for more than 1,000 keys gets 400 with this error code, as from
    /// a server that refuses large pages instead of capping them.
    StandardPagesOnly(&'static str),
    /// Nothing is faulted; requests are only recorded (see `FaultProxy::requests`).
    PassThrough,
}

/// The requests a client can tell failed, by fault, plus the delays it cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Injected {
    slow_down: u64,
    internal_error: u64,
    dropped: u64,
    cut_body: u64,
    stalled: u64,
    delayed: u64,
}

impl Injected {
    /// Faults the client saw as failed requests (a delay is only slowness).
    fn retriable(&self) -> u64 {
        self.slow_down + self.internal_error + self.dropped + self.cut_body + self.stalled
    }
}

#[derive(Default)]
struct Counters {
    slow_down: AtomicU64,
    internal_error: AtomicU64,
    dropped: AtomicU64,
    cut_body: AtomicU64,
    stalled: AtomicU64,
    delayed: AtomicU64,
    /// List requests refused for asking for more than 1,000 keys.
    refused_pages: AtomicU64,
    /// List requests forwarded.
    listed: AtomicU64,
}

impl Counters {
    fn take(&self) -> Injected {
        Injected {
            slow_down: self.slow_down.swap(0, Ordering::SeqCst),
            internal_error: self.internal_error.swap(0, Ordering::SeqCst),
            dropped: self.dropped.swap(0, Ordering::SeqCst),
            cut_body: self.cut_body.swap(0, Ordering::SeqCst),
            stalled: self.stalled.swap(0, Ordering::SeqCst),
            delayed: self.delayed.swap(0, Ordering::SeqCst),
        }
    }
}

struct ProxyState {
    upstream: SocketAddr,
    plan: Plan,
    seen: Mutex<HashSet<String>>,
    eligible: AtomicU64,
    stall_done: AtomicBool,
    cut_done: AtomicBool,
    counters: Counters,
    /// Every request seen: `METHOD PATH?QUERY` and its headers.
    requests: Mutex<Vec<(String, hyper::HeaderMap)>>,
}

/// A loopback HTTP proxy in front of an S3 endpoint that injects faults by `Plan`. Requests
/// are forwarded unchanged, Host header included, so SigV4 signatures still verify.
pub(crate) struct FaultProxy {
    pub(crate) endpoint: String,
    state: Arc<ProxyState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;
type ProxyError = std::io::Error;

/// What one request is, as far as fault injection goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// ListObjects on a bucket.
    List,
    /// GET, HEAD or PUT of one object (uploads, parts and server-side copies included).
    Object,
    /// Anything else (multipart create/complete, deletes, bucket calls): never faulted.
    Other,
}

enum Fault {
    None,
    SlowDown,
    InternalError,
    Drop,
    Delay,
    Stall,
}

fn s3_error(status: StatusCode, code: &str, message: &str, resource: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource><RequestId>fault-proxy</RequestId></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .header("content-length", body.len())
        .body(full(Bytes::from(body)))
        .expect("a valid response")
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

impl FaultProxy {
    pub(crate) fn start(upstream_endpoint: &str, plan: Plan) -> FaultProxy {
        let upstream: SocketAddr = upstream_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("s3s-fs listens on ip:port");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState {
            upstream,
            plan,
            seen: Mutex::new(HashSet::new()),
            eligible: AtomicU64::new(0),
            stall_done: AtomicBool::new(false),
            cut_done: AtomicBool::new(false),
            counters: Counters::default(),
            requests: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { handle(&state, request).await }
                    });
                    // A connection ends with an error whenever a fault drops it: expected.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint: format!("http://{address}"),
            state,
            runtime: Some(runtime),
        }
    }

    /// The faults injected since the last call, and a fresh start: requests seen before may
    /// be faulted again (the one-off stall and cut body stay done).
    fn take_injected(&self) -> Injected {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.state.counters.take()
    }

    /// The requests forwarded so far: `METHOD PATH?QUERY` and the headers as sent.
    pub(crate) fn requests(&self) -> Vec<(String, hyper::HeaderMap)> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// `server`'s environment with the endpoint pointing at this proxy.
    pub(crate) fn env(&self, server: &S3Server) -> Vec<(&'static str, String)> {
        server
            .env()
            .into_iter()
            .map(|(name, value)| match name {
                "AWS_ENDPOINT_URL" => (name, self.endpoint.clone()),
                _ => (name, value),
            })
            .collect()
    }
}

fn classify(method: &hyper::Method, path: &str, query: &str) -> Target {
    let rest = path.trim_start_matches('/');
    let has_key = rest.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    match *method {
        hyper::Method::GET if !has_key && query.contains("list-type") => Target::List,
        hyper::Method::GET | hyper::Method::HEAD | hyper::Method::PUT if has_key => Target::Object,
        _ => Target::Other,
    }
}

fn key_of(path: &str) -> Option<&str> {
    path.trim_start_matches('/')
        .split_once('/')
        .map(|(_, key)| key)
}

fn schedule(state: &ProxyState, target: Target, identity: String) -> Fault {
    if target == Target::Other {
        return Fault::None;
    }
    let first_time = state
        .seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(identity);
    if !first_time {
        return Fault::None;
    }
    let number = state.eligible.fetch_add(1, Ordering::SeqCst) + 1;
    if target == Target::List && number >= 2 && !state.stall_done.swap(true, Ordering::SeqCst) {
        return Fault::Stall;
    }
    if !number.is_multiple_of(4) {
        return Fault::None;
    }
    match (number / 4) % 4 {
        0 => Fault::SlowDown,
        1 => Fault::InternalError,
        2 => Fault::Drop,
        _ => Fault::Delay,
    }
}

async fn handle(
    state: &ProxyState,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = request.into_parts();
    // The whole request is read first, so a fault never races the client's upload.
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let target = classify(&parts.method, &path, &query);
    state
        .requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((
            format!("{} {}", parts.method, parts.uri),
            parts.headers.clone(),
        ));
    let fault = match &state.plan {
        Plan::AlwaysFail(key) => {
            if key_of(&path) == Some(key.as_str()) {
                Fault::SlowDown
            } else {
                Fault::None
            }
        }
        Plan::Scheduled => schedule(state, target, format!("{} {}", parts.method, parts.uri)),
        Plan::StandardPagesOnly(_) | Plan::PassThrough => Fault::None,
    };
    if target == Target::List {
        let asked = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("max-keys="))
            .and_then(|value| value.parse::<u64>().ok());
        if let Plan::StandardPagesOnly(code) = state.plan
            && asked.is_some_and(|keys| keys > 1000)
        {
            state.counters.refused_pages.fetch_add(1, Ordering::SeqCst);
            return Ok(s3_error(
                StatusCode::BAD_REQUEST,
                code,
                "max-keys must be between 0 and 1000",
                &path,
            ));
        }
        state.counters.listed.fetch_add(1, Ordering::SeqCst);
    }
    let counters = &state.counters;
    match fault {
        Fault::SlowDown => {
            counters.slow_down.fetch_add(1, Ordering::SeqCst);
            return Ok(s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
                &path,
            ));
        }
        Fault::InternalError => {
            counters.internal_error.fetch_add(1, Ordering::SeqCst);
            return Ok(s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
                &path,
            ));
        }
        Fault::Drop => {
            counters.dropped.fetch_add(1, Ordering::SeqCst);
            // A service error makes hyper close the connection without a response.
            return Err(std::io::Error::other(
                "fault: connection dropped without a response",
            ));
        }
        Fault::Stall => {
            counters.stalled.fetch_add(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
        Fault::Delay => {
            counters.delayed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Fault::None => {}
    }
    let may_cut = matches!(state.plan, Plan::Scheduled)
        && target == Target::Object
        && (parts.method == hyper::Method::GET || parts.headers.contains_key("x-amz-copy-source"))
        && state.eligible.load(Ordering::SeqCst) >= 5;
    let response = forward(state.upstream, parts, body).await?;
    let (head, bytes) = response;
    if may_cut
        && head.status.is_success()
        && bytes.len() >= 2
        && state
            .cut_done
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        counters.cut_body.fetch_add(1, Ordering::SeqCst);
        let half = bytes.slice(..bytes.len() / 2);
        let frames = futures::stream::iter([
            Ok(Frame::data(half)),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault: response body cut off",
            )),
        ]);
        return Ok(Response::from_parts(
            head,
            BodyExt::boxed(StreamBody::new(frames)),
        ));
    }
    Ok(Response::from_parts(head, full(bytes)))
}

async fn forward(
    upstream: SocketAddr,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<(hyper::http::response::Parts, Bytes), ProxyError> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(std::io::Error::other)?;
    let (head, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((head, bytes))
}

/// Content for `key`, `size` bytes, different for every key.
fn content(key: &str, size: usize) -> Vec<u8> {
    key.bytes()
        .chain(b" ".iter().copied())
        .cycle()
        .take(size)
        .collect()
}

/// The source objects: a few hundred, with spaces, unicode, `%` and `+` in keys, an empty
/// object and one over the (lowered) multipart thresholds.
fn source_objects() -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    for index in 0..200 {
        let key = format!("objects/{index:03}");
        let size = (index * 37) % 3000 + 1;
        objects.push((key.clone(), content(&key, size)));
    }
    for index in 0..20 {
        let key = format!("with spaces/file {index}.txt");
        objects.push((key.clone(), content(&key, 100 + index)));
        let key = format!("ünïcødé/ключ {index}");
        objects.push((key.clone(), content(&key, 50 + index)));
    }
    for index in 0..10 {
        let key = format!("top level {index}");
        objects.push((key.clone(), content(&key, 10 + index)));
    }
    objects.push(("100%/a+b=c".to_owned(), content("100%/a+b=c", 33)));
    objects.push(("empty".to_owned(), Vec::new()));
    objects.push((
        "big/over-threshold".to_owned(),
        content("big/over-threshold", 6 * 1024 * 1024 + 17),
    ));
    objects
}

/// Writes `objects` into `bucket` straight to `s3s-fs` (not through the proxy).
fn seed(server: &S3Server, bucket: &str, objects: &[(String, Vec<u8>)]) {
    let mut options = ankus::store::StoreOptions::new();
    options.insert("endpoint".into(), server.endpoint.clone());
    options.insert("access_key_id".into(), ACCESS_KEY.into());
    options.insert("secret_access_key".into(), SECRET_KEY.into());
    let store = ankus::store::Bucket::open(&format!("s3://{bucket}"), &options).expect("open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        futures::stream::iter(objects)
            .map(|(key, data)| {
                let store = &store;
                async move {
                    store
                        .put_bytes(key, Bytes::from(data.clone()))
                        .await
                        .unwrap_or_else(|error| panic!("seed {key}: {error}"));
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    });
}

const CLONE: &str = r#"
let src = store::open(arg("src"), #{ request_timeout: 3 });
src.sync_to(arg("dst"), #{
    server_side: arg("server_side", true),
    multipart_threshold: 5242880, part_size: 5242880,
    copy_cutoff: 5242880, copy_part_size: 5242880,
})
"#;

const VERIFY: &str = r#"
let src = store::open(arg("src"), #{ request_timeout: 3 });
src.verify_clone(arg("dst"), #{ checksum: true })
"#;

fn run_json(
    dir: &std::path::Path,
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> serde_json::Value {
    let path = write(dir, "script.rhai", script);
    let mut full_args = vec!["--output", "json", "run", path.to_str().expect("utf-8")];
    for arg in args {
        full_args.extend(["-a", arg]);
    }
    let outcome = ankus_env(dir, &full_args, env);
    assert_eq!(
        outcome.code, 0,
        "the run failed:\n{}\n{}",
        outcome.stdout, outcome.stderr
    );
    let document: serde_json::Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|error| panic!("json on stdout ({error}):\n{}", outcome.stdout));
    document["result"].clone()
}

fn count(value: &serde_json::Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("a count, not {value}"))
}

fn clone_completes_through_faults(server_side: bool) {
    let server = S3Server::start(&["src", "dst"]);
    let objects = source_objects();
    seed(&server, "src", &objects);
    let proxy = FaultProxy::start(&server.endpoint, Plan::Scheduled);
    let env = proxy.env(&server);
    let dir = temp_dir();
    let server_side_arg = format!("server_side={server_side}");
    let args = ["src=s3://src", "dst=s3://dst", server_side_arg.as_str()];

    let report = run_json(dir.path(), CLONE, &args, &env);
    let injected = proxy.take_injected();
    let total = objects.len() as u64;
    assert_eq!(count(&report["failed"]), 0, "{report:#}");
    assert_eq!(count(&report["copied"]), total, "{report:#}");
    let expected_server_side = if server_side { total } else { 0 };
    assert_eq!(
        count(&report["server_side"]),
        expected_server_side,
        "{report:#}"
    );
    // Every kind of fault happened, so the run proves each is survived.
    assert!(
        injected.slow_down > 0
            && injected.internal_error > 0
            && injected.dropped > 0
            && injected.delayed > 0
            && injected.stalled == 1
            && injected.cut_body == 1,
        "{injected:?}"
    );
    let retries = count(&report["retries"]);
    assert!(
        retries >= injected.retriable(),
        "the report counts {retries} retries for {} failed requests ({injected:?})",
        injected.retriable()
    );
    eprintln!(
        "server_side={server_side}: {total} objects, injected {injected:?} ({} retriable), report retries={retries}",
        injected.retriable()
    );

    // Faults go on while the clone is verified; the verification still holds.
    let verified = run_json(dir.path(), VERIFY, &args[..2], &env);
    let during_verify = proxy.take_injected();
    assert_eq!(verified["ok"], true, "{verified:#}");
    assert_eq!(count(&verified["src_objects"]), total, "{verified:#}");
    assert_eq!(count(&verified["dst_objects"]), total, "{verified:#}");
    assert!(during_verify.retriable() > 0, "{during_verify:?}");

    // Independently of ankus: the files s3s-fs stores are the same on both sides.
    let source_files = server.bucket_files("src");
    assert_eq!(source_files.len(), objects.len());
    assert_eq!(server.bucket_files("dst"), source_files);
    for file in &source_files {
        let read = |bucket: &str| {
            std::fs::read(server.root.path().join(bucket).join(file))
                .unwrap_or_else(|error| panic!("read {bucket}/{file}: {error}"))
        };
        assert!(read("src") == read("dst"), "{file} differs");
    }
}

#[test]
fn clone_with_server_side_copy_survives_throttling_errors_resets_and_stalls() {
    clone_completes_through_faults(true);
}

#[test]
fn streaming_clone_survives_throttling_errors_resets_and_stalls() {
    clone_completes_through_faults(false);
}

#[test]
fn an_object_that_keeps_failing_is_reported_and_no_deletion_is_mirrored() {
    let server = S3Server::start(&["src", "dst"]);
    let objects: Vec<(String, Vec<u8>)> = (0..30)
        .map(|index| {
            let key = format!("object/{index}");
            let data = content(&key, 64);
            (key, data)
        })
        .collect();
    seed(&server, "src", &objects);
    let stale: Vec<(String, Vec<u8>)> = (0..3)
        .map(|index| (format!("stale/{index}"), content("stale", 10)))
        .collect();
    seed(&server, "dst", &stale);
    let proxy = FaultProxy::start(&server.endpoint, Plan::AlwaysFail("object/13".to_owned()));
    let dir = temp_dir();

    let outcome = ankus_env(
        dir.path(),
        &[
            "run",
            "clone-bucket",
            "-a",
            "src=s3://src",
            "-a",
            "dst=s3://dst",
            "-a",
            "delete=true",
        ],
        &proxy.env(&server),
    );
    let injected = proxy.take_injected();
    assert_eq!(outcome.code, 1, "{}\n{}", outcome.stdout, outcome.stderr);
    assert!(
        outcome.stdout.contains("s3://src -> s3://dst: copied 29 (")
            && outcome.stdout.contains("skipped 0, failed 1, "),
        "{}",
        outcome.stdout
    );
    let failed_line = outcome
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("failed: "))
        .unwrap_or_else(|| panic!("no failed line:\n{}", outcome.stdout));
    assert!(
        failed_line.contains("object/13") && failed_line.contains("503 SlowDown"),
        "{failed_line}"
    );
    assert!(
        outcome
            .stdout
            .contains("deletions skipped: 1 object(s) failed to copy"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stderr
            .contains("1 object(s) failed to copy; re-run to retry them"),
        "{}",
        outcome.stderr
    );
    // The first attempt and 5 object-level re-attempts all met the fault.
    assert_eq!(injected.slow_down, 6, "{injected:?}");
    assert!(
        outcome.stdout.contains(", 11 retries in "),
        "each failed copy request counts once, each re-attempt once:\n{}",
        outcome.stdout
    );

    let mut expected: Vec<String> = objects
        .iter()
        .map(|(key, _)| key.clone())
        .filter(|key| key != "object/13")
        .chain(stale.iter().map(|(key, _)| key.clone()))
        .collect();
    expected.sort();
    assert_eq!(server.bucket_files("dst"), expected);
}

#[test]
fn a_server_that_refuses_pages_over_1000_keys_is_listed_in_pages_of_1000() {
    listed_in_pages_of_1000_after_refusals_with("InvalidArgument");
}

#[test]
fn a_server_refusing_large_pages_with_another_400_code_is_listed_in_pages_of_1000() {
    // Not every server says InvalidArgument; any 400 to a page above 1,000 keys is retried
    // with 1,000, which a server either takes or refuses for its real reason.
    listed_in_pages_of_1000_after_refusals_with("InvalidRequest");
}

fn listed_in_pages_of_1000_after_refusals_with(code: &'static str) {
    let server = S3Server::start(&["src", "dst"]);
    // More than one standard page in one folder, so continuation tokens are followed.
    let objects: Vec<(String, Vec<u8>)> = (0..1234)
        .map(|index| {
            let key = format!("flat/{index:04}");
            let data = content(&key, 16);
            (key, data)
        })
        .collect();
    seed(&server, "src", &objects);
    let proxy = FaultProxy::start(&server.endpoint, Plan::StandardPagesOnly(code));
    let dir = temp_dir();

    let report = run_json(
        dir.path(),
        CLONE,
        &["src=s3://src", "dst=s3://dst"],
        &proxy.env(&server),
    );
    assert_eq!(count(&report["failed"]), 0, "{report:#}");
    assert_eq!(count(&report["copied"]), 1234, "{report:#}");
    let refused = proxy.state.counters.refused_pages.load(Ordering::SeqCst);
    let listed = proxy.state.counters.listed.load(Ordering::SeqCst);
    // Each store learns once: the source and the destination.
    assert_eq!(refused, 2, "refused list requests");
    // src: the top level, then flat/ in two pages; dst: one empty page.
    assert_eq!(listed, 4, "list requests forwarded");
    let mut expected: Vec<String> = objects.iter().map(|(key, _)| key.clone()).collect();
    expected.sort();
    assert_eq!(server.bucket_files("dst"), expected);
}
