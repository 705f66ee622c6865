//! Kubernetes API faults during migrate's NodePort swap and its revert. A proxy in front of the
//! sandbox's API server answers writes to the old namespace's `services/pachd` with 409
//! Conflict or 500, or holds them until the client gives up and closes its connection; the
//! tests check what the operator sees, and that the proxy really did what it was told.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::flows::{SandboxProcess, assert_old_cluster_serving};
use crate::kube::kubectl_path;
use crate::support::{Outcome, temp_dir};

/// The object whose writes the proxy interferes with.
const PACHD_SERVICE: &str = "/api/v1/namespaces/old/services/pachd";

/// What the proxy does with one write (PATCH or PUT) to [`PACHD_SERVICE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Forward it and relay the answer.
    Pass,
    /// Answer 409 Conflict (a stale resourceVersion) without forwarding it.
    Conflict,
    /// Answer 500 without forwarding it.
    ServerError,
    /// Never forward it; hold the connection until the client closes it.
    HoldRequest,
    /// Forward it (the change lands), then hold the answer until the client closes the
    /// connection.
    HoldAnswer,
}

/// What a write to the Service is for, read from its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The `ankus.io/quiesce` annotation alone (the lease written before pipelines stop).
    Mark,
    /// The NodePort swap: a JSON patch that tests and replaces `/spec/ports/N/nodePort`.
    Swap,
    /// Putting the Service back: the saved spec (PUT), or the swap reversed together with the
    /// annotation's removal.
    Revert,
}

fn role_of(method: &str, body: &[u8]) -> Role {
    if method == "PUT" {
        return Role::Revert;
    }
    let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let operations = patch.as_array().cloned().unwrap_or_default();
    let touches = |op: &str, path: &str| {
        operations
            .iter()
            .any(|it| it["op"] == op && it["path"].as_str().is_some_and(|p| p.contains(path)))
    };
    if touches("remove", "ankus.io~1quiesce") {
        Role::Revert
    } else if touches("replace", "/spec/ports/") {
        Role::Swap
    } else {
        Role::Mark
    }
}

/// One write the proxy saw, and what became of it.
#[derive(Clone, Debug)]
struct Write {
    role: Role,
    /// A server-side dry run (`dryRun=All`), as the previews of plans send.
    dry_run: bool,
    fault: Fault,
    /// The upstream's HTTP status, when the write was forwarded.
    upstream: Option<u16>,
    /// Whether the client closed the connection while the proxy held the request.
    client_gave_up: bool,
}

/// Chooses the fault for a write from the write and the writes before it.
type Plan = dyn Fn(&Write, &[Write]) -> Fault + Send + Sync;

/// A fault-injecting HTTP/1.1 proxy on 127.0.0.1:0 in front of the sandbox's API server.
struct FaultProxy {
    address: SocketAddr,
    writes: Arc<Mutex<Vec<Write>>>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr, plan: Arc<Plan>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let writes = Arc::new(Mutex::new(Vec::new()));
        let log = writes.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, plan.clone(), log.clone()));
            }
        });
        FaultProxy { address, writes }
    }

    fn writes(&self) -> Vec<Write> {
        self.writes.lock().expect("lock").clone()
    }
}

/// One request as the client sent it.
struct Request {
    method: String,
    path: String,
    dry_run: bool,
    /// The request line and headers, without the blank line.
    head: String,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16384];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    assert!(
        header("transfer-encoding").is_none(),
        "the proxy reads Content-Length bodies only: {head}"
    );
    let length: usize = header("content-length").map_or(0, |value| value.parse().expect("length"));
    while buffer.len() < end + 4 + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let mut request_line = head.split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method,
        path: path.to_owned(),
        dry_run: query.split('&').any(|pair| pair == "dryRun=All"),
        body: buffer[end + 4..end + 4 + length].to_vec(),
        head,
    })
}

/// The request as sent upstream: the same, on a connection that closes after the answer, so
/// the answer ends where the upstream's stream does.
fn upstream_bytes(request: &Request) -> Vec<u8> {
    let mut head: Vec<&str> = request
        .head
        .lines()
        .filter(|line| {
            !line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("connection")
        })
        .collect();
    head.push("Connection: close");
    let mut bytes = head.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(&request.body);
    bytes
}

fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|byte| *byte == b'\r').next()?;
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Waits until the client closes its end: the request was abandoned.
async fn client_closes(client: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    while let Ok(read) = client.read(&mut chunk).await {
        if read == 0 {
            return;
        }
    }
}

/// A Kubernetes `Status` answer.
fn status_answer(code: u16, text: &str, reason: &str, message: &str) -> Vec<u8> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": { "name": "pachd", "kind": "services" },
        "code": code,
    })
    .to_string();
    format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    plan: Arc<Plan>,
    writes: Arc<Mutex<Vec<Write>>>,
) {
    let Some(request) = read_request(&mut client).await else {
        return;
    };
    let is_write = request.path == PACHD_SERVICE && ["PATCH", "PUT"].contains(&&*request.method);
    let (fault, index) = if is_write {
        let mut log = writes.lock().expect("lock");
        let mut write = Write {
            role: role_of(&request.method, &request.body),
            dry_run: request.dry_run,
            fault: Fault::Pass,
            upstream: None,
            client_gave_up: false,
        };
        write.fault = plan(&write, &log);
        let fault = write.fault;
        log.push(write);
        (fault, Some(log.len() - 1))
    } else {
        (Fault::Pass, None)
    };
    let record = |update: &dyn Fn(&mut Write)| {
        if let Some(index) = index {
            update(&mut writes.lock().expect("lock")[index]);
        }
    };
    match fault {
        Fault::Conflict => {
            let answer = status_answer(
                409,
                "Conflict",
                "Conflict",
                "Operation cannot be fulfilled on services \"pachd\": the object has been \
                 modified; please apply your changes to the latest version and try again",
            );
            let _ = client.write_all(&answer).await;
        }
        Fault::ServerError => {
            let answer = status_answer(
                500,
                "Internal Server Error",
                "InternalError",
                "Internal error occurred: etcdserver: request timed out (injected)",
            );
            let _ = client.write_all(&answer).await;
        }
        Fault::HoldRequest => {
            client_closes(&mut client).await;
            record(&|write| write.client_gave_up = true);
        }
        Fault::Pass | Fault::HoldAnswer => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(&upstream_bytes(&request)).await.is_err() {
                return;
            }
            let mut answer = Vec::new();
            let mut chunk = [0u8; 16384];
            // Relayed as it arrives, so watches stream through.
            while let Ok(read) = server.read(&mut chunk).await {
                if read == 0 {
                    break;
                }
                if answer.is_empty() {
                    let code = status_code(&chunk[..read]);
                    record(&|write| write.upstream = code);
                }
                answer.extend_from_slice(&chunk[..read]);
                if fault == Fault::Pass && client.write_all(&chunk[..read]).await.is_err() {
                    return;
                }
            }
            if fault == Fault::HoldAnswer {
                client_closes(&mut client).await;
                record(&|write| write.client_gave_up = true);
            }
        }
    }
}

/// The sandbox's API server, from the kubeconfig it wrote.
fn upstream_of(kubeconfig: &Value) -> SocketAddr {
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server");
    let address = server.strip_prefix("http://").unwrap_or_else(|| {
        panic!("the sandbox's API server is {server}: this proxy forwards plain HTTP only")
    });
    address.parse().expect("host:port")
}

/// Starts the proxy with `plan` in front of the sandbox's API server and writes a copy of the
/// sandbox's kubeconfig pointing at it.
fn proxy_for(
    sandbox: &SandboxProcess,
    runtime: &tokio::runtime::Runtime,
    plan: Arc<Plan>,
) -> (FaultProxy, PathBuf) {
    let text = std::fs::read_to_string(sandbox.dir.join("kubeconfig")).expect("kubeconfig");
    let mut kubeconfig: Value = serde_yaml::from_str(&text).expect("yaml");
    let upstream = upstream_of(&kubeconfig);
    let proxy = runtime.block_on(FaultProxy::start(upstream, plan));
    for cluster in kubeconfig["clusters"].as_array_mut().expect("clusters") {
        cluster["cluster"]["server"] = format!("http://{}", proxy.address).into();
    }
    let path = sandbox.dir.join("kubeconfig-through-proxy");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).expect("yaml")).expect("write");
    (proxy, path)
}

/// `ankus run migrate` through the proxy, failing after `fail_at`, with short kube timeouts.
fn migrate_through(
    sandbox: &SandboxProcess,
    work: &Path,
    kubeconfig: &Path,
    fail_at: &str,
) -> Outcome {
    let mut args: Vec<String> = vec!["run".into(), "migrate".into(), "--yes".into()];
    args.extend(sandbox.migrate_args(work));
    args.extend([
        "-a".into(),
        "kube_timeout=2".into(),
        "-a".into(),
        format!("fail_at={fail_at}"),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox
        .ankus(work, &argv)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("migrate runs")
        .into()
}

fn saved_spec_path(work: &Path) -> PathBuf {
    work.join("migrate.dump.pachd-service.json")
}

/// The Service spec as saved before the swap.
fn saved_spec(work: &Path) -> Value {
    let saved: Value =
        serde_json::from_slice(&std::fs::read(saved_spec_path(work)).expect("saved spec"))
            .expect("json");
    saved["object"]["spec"].clone()
}

fn live_spec(sandbox: &SandboxProcess, work: &Path) -> Value {
    sandbox.eval(work, r#"kube::connect("old").get("service", "pachd").spec"#)
}

fn node_ports(spec: &Value) -> Vec<i64> {
    spec["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|port| port["nodePort"].as_i64())
        .collect()
}

#[test]
fn conflicts_and_stalls_during_the_swap_and_its_revert_leave_the_old_cluster_serving() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The swap (a JSON patch): its first attempt meets a conflict, the next one lands but its
    // answer is lost. The revert (the swap reversed with the quiesce mark removed; dry-run
    // previews are left alone): a conflict, then a request that never arrives.
    let plan: Arc<Plan> = Arc::new(|write, before| {
        if write.dry_run {
            return Fault::Pass;
        }
        let earlier = before
            .iter()
            .filter(|w| w.role == write.role && !w.dry_run)
            .count();
        match (write.role, earlier) {
            (Role::Swap | Role::Revert, 0) => Fault::Conflict,
            (Role::Swap, 1) => Fault::HoldAnswer,
            (Role::Revert, 1) => Fault::HoldRequest,
            _ => Fault::Pass,
        }
    });
    let (proxy, kubeconfig) = proxy_for(&sandbox, &runtime, plan);

    let out = migrate_through(&sandbox, work.path(), &kubeconfig, "checkpoint");
    let writes = proxy.writes();
    assert_eq!(out.code, 1, "{}\n{writes:#?}", out.stderr);
    assert!(
        out.stderr
            .contains("injected failure after step checkpoint"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("putting the old cluster back"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("could not restore the pachd Service")
            && !out.stderr.contains("deferred cleanup failed"),
        "the revert failed: {}\n{writes:#?}",
        out.stderr
    );
    // The lost answer of the swap: the resend met the change already made, and said so.
    assert!(
        out.stderr
            .contains("the nodePort change of service pachd reported a failure"),
        "{}\n{writes:#?}",
        out.stderr
    );

    // Every fault was injected, and each held request was given up by the client.
    let injected = |role: Role, fault: Fault| {
        writes
            .iter()
            .filter(|w| w.role == role && !w.dry_run && w.fault == fault)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        injected(Role::Swap, Fault::Conflict).len(),
        1,
        "{writes:#?}"
    );
    assert_eq!(
        injected(Role::Revert, Fault::Conflict).len(),
        1,
        "{writes:#?}"
    );
    let held_answer = injected(Role::Swap, Fault::HoldAnswer);
    assert_eq!(held_answer.len(), 1, "{writes:#?}");
    assert!(held_answer[0].client_gave_up, "{writes:#?}");
    assert_eq!(
        held_answer[0].upstream,
        Some(200),
        "the held swap landed: {writes:#?}"
    );
    let held_request = injected(Role::Revert, Fault::HoldRequest);
    assert_eq!(held_request.len(), 1, "{writes:#?}");
    assert!(held_request[0].client_gave_up, "{writes:#?}");
    // After the faults, the revert was sent again and went through.
    assert!(
        writes.iter().any(|w| w.role == Role::Revert
            && !w.dry_run
            && w.fault == Fault::Pass
            && w.upstream == Some(200)),
        "{writes:#?}"
    );

    assert_old_cluster_serving(&sandbox, work.path(), "after faults in the swap and revert");
    let saved = saved_spec(work.path());
    assert!(node_ports(&saved).contains(&30650), "{saved}");
    assert_eq!(
        live_spec(&sandbox, work.path()),
        saved,
        "the Service is back as saved"
    );
}

#[test]
fn a_revert_that_cannot_happen_ends_with_the_saved_spec_and_the_commands_that_restore_it() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The mark and the swap go through; every revert fails: 500s and requests held until the
    // client gives up, in turn.
    let plan: Arc<Plan> = Arc::new(|write, before| {
        if write.role != Role::Revert {
            return Fault::Pass;
        }
        match before.iter().filter(|w| w.role == Role::Revert).count() % 2 {
            0 => Fault::ServerError,
            _ => Fault::HoldRequest,
        }
    });
    let (proxy, kubeconfig) = proxy_for(&sandbox, &runtime, plan);

    let out = migrate_through(&sandbox, work.path(), &kubeconfig, "checkpoint");
    let writes = proxy.writes();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let saved = saved_spec_path(work.path());
    let saved = saved.to_str().expect("utf-8");
    let bare = work.path().join("migrate.dump.pachd-service.kubectl.json");
    let bare = bare.to_str().expect("utf-8");
    let ankus_command = format!("ankus run unblock-ingress -a from=old -a saved={saved}");
    let kubectl_command = format!("kubectl --context old apply -f {bare}");
    for expected in [
        "could not restore the pachd Service".to_owned(),
        format!("its spec is saved in {saved}:"),
        format!("'{ankus_command}'"),
        format!("'{kubectl_command}'"),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "stderr lacks {expected:?}:\n{}\n{writes:#?}",
            out.stderr
        );
    }
    // The revert was tried several times against each kind of failure before giving up.
    assert!(
        writes
            .iter()
            .any(|w| w.role == Role::Swap && w.fault == Fault::Pass),
        "{writes:#?}"
    );
    let failed: Vec<&Write> = writes.iter().filter(|w| w.role == Role::Revert).collect();
    assert!(
        failed.iter().any(|w| w.fault == Fault::ServerError)
            && failed
                .iter()
                .any(|w| w.fault == Fault::HoldRequest && w.client_gave_up),
        "{writes:#?}"
    );
    assert!(
        failed.len() >= 2 && failed.iter().all(|w| w.fault != Fault::Pass),
        "{writes:#?}"
    );
    assert!(
        out.stderr.contains("gave up after"),
        "the last error says how often it was tried: {}",
        out.stderr
    );

    // The saved file holds the original spec; the Service is still swapped; the pipelines were
    // started all the same.
    let original = saved_spec(work.path());
    assert!(node_ports(&original).contains(&30650), "{original}");
    assert!(!node_ports(&original).contains(&30649), "{original}");
    let live = live_spec(&sandbox, work.path());
    assert!(node_ports(&live).contains(&30649), "{live}");
    assert!(
        !out.stderr.contains("pipelines could not be started"),
        "{}",
        out.stderr
    );
    let config: Value = serde_json::from_slice(
        &std::fs::read(sandbox.dir.join("pachctl-config.json")).expect("config"),
    )
    .expect("json");
    let blocked_address = config["v2"]["contexts"]["old"]["pachd_address"]
        .as_str()
        .expect("address")
        .replace(":30650", ":30649");
    let states = sandbox.eval(
        work.path(),
        &format!(
            r#"pachd::connect(#{{ context: "old", address: "{blocked_address}" }}).pipelines().map(|p| p.state)"#
        ),
    );
    assert!(
        states
            .as_array()
            .expect("states")
            .iter()
            .all(|state| state != "paused"),
        "{states}"
    );

    // The kubectl copy is a plain object kubectl accepts (checked by the server, changing
    // nothing).
    let kubectl = Command::new(kubectl_path())
        .args(["--context", "old", "apply", "--dry-run=server", "-f", bare])
        .env("KUBECONFIG", sandbox.dir.join("kubeconfig"))
        .env("HOME", work.path())
        .env("KUBECACHEDIR", work.path().join("kube-cache"))
        .output()
        .expect("kubectl runs");
    assert!(
        kubectl.status.success(),
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );

    // The printed command, run as printed without the proxy, puts the Service back.
    let start = out
        .stderr
        .find("'ankus run unblock-ingress")
        .expect("command")
        + 1;
    let length = out.stderr[start..].find('\'').expect("closing quote");
    let printed: Vec<&str> = out.stderr[start..start + length].split(' ').collect();
    assert_eq!(printed[0], "ankus");
    let restored = sandbox.run(work.path(), &printed[1..]);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_old_cluster_serving(&sandbox, work.path(), "after the printed unblock-ingress");
    assert_eq!(live_spec(&sandbox, work.path()), original);
}
