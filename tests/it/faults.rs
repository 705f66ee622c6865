//! Faults injected on purpose: a loopback TCP proxy in front of an emulated pachd cuts the
//! connection part-way through an extract or a restore. What a user sees: no file that looks
//! like a backup, an error that says how far it got, what the target holds, a clean re-run and
//! an exact cleanup.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ankus::backup::reader::RecordReader;
use ankus::backup::wire::{OpKind, OpVersion, wrap};
use ankus::sandbox::cluster::{restore_dump, spawn_cluster};
use ankus::sandbox::pachd::{Cluster, ClusterConfig};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::backup::{dump_of, fixture};
use crate::support::{ankus_async, pach_config, temp_dir, write};

/// Which way the proxy counts bytes before it cuts.
#[derive(Clone, Copy)]
pub enum Cut {
    /// pachd → client (an extract's stream).
    ToClient,
    /// client → pachd (a restore's stream).
    ToServer,
}

/// A loopback TCP proxy in front of `upstream`: the first connection is reset once `limit`
/// bytes have passed in the counted direction, as if pachd died; later connections pass
/// untouched (pachd came back), so the client can ask what the target holds.
pub struct CutProxy {
    pub address: SocketAddr,
    pub cut: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    limit: Option<u64>,
) -> bool {
    let mut buffer = vec![0u8; 16 << 10];
    let mut passed = 0u64;
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => read,
        };
        let allowed = match limit {
            Some(limit) if passed + read as u64 >= limit => {
                let rest = (limit - passed) as usize;
                let _ = to.write_all(&buffer[..rest]).await;
                return true;
            }
            _ => read,
        };
        if to.write_all(&buffer[..allowed]).await.is_err() {
            return false;
        }
        passed += allowed as u64;
    }
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr, limit: u64, direction: Cut) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (seen_cut, stopped) = (cut.clone(), stop.clone());
        let connections = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                };
                let first = connections.fetch_add(1, Ordering::SeqCst) == 0;
                let seen_cut = seen_cut.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (limit_up, limit_down) = match (first, direction) {
                        (true, Cut::ToServer) => (Some(limit), None),
                        (true, Cut::ToClient) => (None, Some(limit)),
                        (false, _) => (None, None),
                    };
                    // A zero linger turns the close into a reset: the peer sees a dead
                    // pachd, not a clean end of stream.
                    let _ = client.set_zero_linger();
                    let _ = server.set_zero_linger();
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let cut_now = tokio::select! {
                        cut = pump(client_read, server_write, limit_up) => cut,
                        cut = pump(server_read, client_write, limit_down) => cut,
                    };
                    if cut_now {
                        seen_cut.store(true, Ordering::SeqCst);
                    }
                });
            }
        });
        CutProxy { address, cut, stop }
    }
}

/// An emulated pachd served in-process for one test.
pub struct Served {
    pub cluster: Cluster,
    pub address: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn serve(version: &str) -> Served {
    let dir = temp_dir();
    let config = ClusterConfig::new(
        "test",
        version.parse().expect("version"),
        &dir.path().join("bucket"),
    );
    let (cluster, address, shutdown, _task) = spawn_cluster(config).await.expect("cluster starts");
    Served {
        cluster,
        address,
        shutdown,
        _dir: dir,
    }
}

/// A 1.11 cluster holding the fixture, and the root token the seed made.
pub async fn seeded() -> (Served, String) {
    let served = serve("1.11").await;
    let token = "seed-root-token-7d1e0c5b9a".to_owned();
    restore_dump(&format!("http://{}", served.address), &fixture(), &token)
        .await
        .expect("seed restores");
    (served, token)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_cut_mid_stream_leaves_no_backup_and_a_rerun_succeeds() {
    let (served, token) = seeded().await;
    let proxy = CutProxy::start(served.address, 120_000, Cut::ToClient).await;
    let dir = temp_dir();
    let config = pach_config(
        dir.path(),
        &[
            ("cut", &format!("grpc://{}", proxy.address), Some(&token)),
            ("old", &format!("grpc://{}", served.address), Some(&token)),
        ],
    );
    write(
        dir.path(),
        "extract.rhai",
        r#"let c = pachd::connect(arg("ctx"));
let s = c.extract(#{ to: "out/b.dump" });
print(`records ${s.inventory.records}`);
"#,
    );
    let out = ankus_async(
        dir.path(),
        &config,
        &["run", "./extract.rhai", "-a", "ctx=cut"],
        &[],
    )
    .await;
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy cut the stream");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("extract failed after ")
            && out.stderr.contains(" bytes); no backup was written"),
        "the error says how far it got: {}",
        out.stderr
    );
    let got: u64 = out.stderr["extract failed after ".len()
        + out.stderr.find("extract failed after ").expect("message")..]
        .split(' ')
        .next()
        .and_then(|ops| ops.parse().ok())
        .expect("an op count");
    assert!(got > 0 && got < 631, "part of the stream arrived: {got}");
    let out_dir = dir.path().join("out");
    assert_eq!(
        files_in(&out_dir),
        Vec::<String>::new(),
        "no dump, no manifest, no temporary file"
    );

    let again = ankus_async(
        dir.path(),
        &config,
        &["run", "./extract.rhai", "-a", "ctx=old"],
        &[],
    )
    .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout, "records 631\n");
    assert_eq!(files_in(&out_dir), ["b.dump", "b.dump.manifest.json"]);
    let verified = crate::support::ankus_in(dir.path(), &["backup", "verify", "out/b.dump"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(verified.stdout.contains("manifest checked"), "{verified:?}");
}

/// The fixture's records up to (not including) `pipeline sort`, then a 2 MiB block, then
/// the rest: a cut inside the block leaves repos and the pipeline `copy` behind.
fn fixture_with_a_big_block() -> (Vec<u8>, u64) {
    let reader = RecordReader::new(std::fs::File::open(fixture()).expect("open")).expect("read");
    let records: Vec<Vec<u8>> = reader.map(|record| record.expect("record").bytes).collect();
    let mut noise = vec![0u8; 2 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let block = |value: Vec<u8>| {
        let request = ankus::proto::pfs::PutBlockRequest {
            block: Some(ankus::proto::pfs::Block {
                hash: "fault-injection-block".into(),
            }),
            value,
        };
        wrap(OpVersion::V1_11, OpKind::Block, &request.encode_to_vec())
    };
    let mut ops: Vec<Vec<u8>> = records[..615].to_vec();
    let before_block: u64 = ops.iter().map(|op| 8 + op.len() as u64).sum();
    ops.push(block(noise));
    ops.push(block(Vec::new()));
    ops.extend(records[615..].iter().cloned());
    (dump_of(&ops), before_block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_cut_mid_stream_reports_the_target_and_cleanup_removes_exactly_that() {
    let served = serve("1.11").await;
    let (dump, before_block) = fixture_with_a_big_block();
    // Half way into the 2 MiB block: far from any record boundary, whatever the framing.
    let proxy = CutProxy::start(served.address, before_block + (1 << 20), Cut::ToServer).await;
    let dir = temp_dir();
    std::fs::write(dir.path().join("big.dump"), &dump).expect("write dump");
    let config = pach_config(
        dir.path(),
        &[("cut", &format!("grpc://{}", proxy.address), None)],
    );
    write(
        dir.path(),
        "restore.rhai",
        r#"let c = pachd::connect("cut");
try {
    // Lenient: a real pachd applies ops as they arrive (the strict sandbox would apply nothing).
    c.restore("big.dump", #{ mode: "lenient" });
    print("restored");
} catch (e) {
    print(`kind ${e.kind}`);
    print(`last ${e.details.last}`);
    print(`repos ${e.details.repos}`);
    print(`created ${e.details.created.repos} ${e.details.created.pipelines}`);
    let gone = c.cleanup_restore(e.details);
    print(`deleted ${gone.repos} ${gone.pipelines}`);
    print(`left ${c.repos().len()} ${c.pipelines().len()}`);
}
"#,
    );
    let out = ankus_async(dir.path(), &config, &["run", "./restore.rhai"], &[]).await;
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy cut the stream");
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "kind failed", "{out:?}");
    // pachd's Restore answers only at the end, so "sent" is what the connection took: the
    // big block or an op after it (gRPC buffers ahead); the target's listing says what was
    // applied.
    let last: u64 = lines[1]
        .strip_prefix("last record ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|index| index.parse().ok())
        .expect("last record N");
    assert!((615..=632).contains(&last), "{out:?}");
    assert_eq!(
        &lines[2..],
        [
            r#"repos ["sort", "copy", "right", "left"]"#,
            r#"created ["sort", "copy", "right", "left"] ["copy"]"#,
            r#"deleted ["left", "right", "sort"] ["copy"]"#,
            "left 0 0",
        ],
        "{out:?}"
    );
    let state = served.cluster.lock();
    assert!(
        state.repos.keys().all(|name| name == "__spec__"),
        "{:?}",
        state.repos.keys()
    );
    assert!(state.pipelines.is_empty());
}
