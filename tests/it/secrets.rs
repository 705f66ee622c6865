//! Secrets and the guards around restore: session tokens, S3 keys, kube bearer tokens,
//! activation codes and generated root tokens never show in output, plans, errors, JSON or
//! journals; restore refuses non-empty targets unless forced and non-admin callers before
//! any op is sent; a restore that activates auth shows its new root token once, on stderr.

use ankus::backup::Op;
use ankus::backup::op::string_at;
use ankus::backup::reader::RecordReader;
use ankus::backup::wire::{OpKind, OpVersion};

use crate::backup::{dump_of, fixture, repo_op};
use crate::faults::{seeded, serve};
use crate::support::{ankus_async, pach_config, temp_dir, write};

fn activation_code() -> String {
    let reader = RecordReader::new(std::fs::File::open(fixture()).expect("open")).expect("read");
    for record in reader {
        let op = Op::from_record(record.expect("record")).expect("op");
        if op.kind == OpKind::ActivateEnterprise {
            return string_at(&op.request().expect("decodes"), &["activation_code"])
                .expect("an activation code");
        }
    }
    panic!("the fixture activates enterprise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_cluster_with_repos_is_refused_unless_forced() {
    let served = serve("1.13").await;
    let dir = temp_dir();
    let config = pach_config(
        dir.path(),
        &[("t", &format!("grpc://{}", served.address), None)],
    );
    std::fs::write(
        dir.path().join("two.dump"),
        dump_of(&[
            repo_op(OpVersion::V1_13, "a"),
            repo_op(OpVersion::V1_13, "b"),
        ]),
    )
    .expect("write dump");
    write(
        dir.path(),
        "restore.rhai",
        r#"let c = pachd::connect("t");
if c.repos().is_empty() { c.create_repo("existing"); }
let r = c.restore("two.dump", #{ force: arg("force") == "yes" });
print(`ops ${r.ops}`);
"#,
    );
    let refused = ankus_async(
        dir.path(),
        &config,
        &["run", "./restore.rhai", "-a", "force=no"],
        &[],
    )
    .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("already has 1 repo(s) (existing); restore into an empty cluster, or pass #{ force: true }"),
        "{}",
        refused.stderr
    );
    assert_eq!(served.cluster.restore_ops_received(), 0);
    let forced = ankus_async(
        dir.path(),
        &config,
        &["run", "./restore.rhai", "-a", "force=yes"],
        &[],
    )
    .await;
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(forced.stdout, "ops 2\n");
    let repos: Vec<String> = served.cluster.lock().repos.keys().cloned().collect();
    assert_eq!(repos, ["a", "b", "existing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_cluster_with_auth_needs_an_admin_token_before_any_op() {
    let (served, _root) = seeded().await;
    let seeded_ops = served.cluster.restore_ops_received();
    let dir = temp_dir();
    let config = pach_config(
        dir.path(),
        &[
            ("anonymous", &format!("grpc://{}", served.address), None),
            (
                "stranger",
                &format!("grpc://{}", served.address),
                Some("not-a-known-token-4b1d"),
            ),
        ],
    );
    std::fs::write(
        dir.path().join("one.dump"),
        dump_of(&[repo_op(OpVersion::V1_11, "extra")]),
    )
    .expect("write dump");
    write(
        dir.path(),
        "restore.rhai",
        r#"pachd::connect(arg("ctx")).restore("one.dump", #{ force: true });"#,
    );
    for context in ["anonymous", "stranger"] {
        let out = ankus_async(
            dir.path(),
            &config,
            &["run", "./restore.rhai", "-a", &format!("ctx={context}")],
            &[],
        )
        .await;
        assert_eq!(out.code, 1, "{context}: {out:?}");
        assert!(
            out.stderr
                .contains("needs a cluster admin token; no op was sent")
                && out.stderr.contains("(permission_denied)"),
            "{context}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("not-a-known-token-4b1d"),
            "{context}: the token is redacted: {}",
            out.stderr
        );
        assert_eq!(
            served.cluster.restore_ops_received(),
            seeded_ops,
            "{context}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_show_and_the_new_root_token_is_shown_once_on_stderr() {
    let served = serve("1.11").await;
    let dir = temp_dir();
    let session_token = "ctx-session-token-1f2e3d4c5b";
    let s3_secret = "s3-secret-key-a9b8c7d6e5";
    let kube_token = "kube-bearer-token-0a1b2c3d";
    let config = pach_config(
        dir.path(),
        &[
            ("new", &format!("grpc://{}", served.address), None),
            ("dead", "grpc://127.0.0.1:9", Some(session_token)),
        ],
    );
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: old\n\
             clusters: [{{name: old, cluster: {{server: 'http://127.0.0.1:9'}}}}]\n\
             users: [{{name: admin, user: {{token: {kube_token}}}}}]\n\
             contexts: [{{name: old, context: {{cluster: old, user: admin}}}}]\n"
        ),
    );
    std::fs::copy(fixture(), dir.path().join("auth.dump")).expect("copy fixture");
    write(
        dir.path(),
        "secrets.rhai",
        r#"let c = pachd::connect("new");
let r = step("restore", || c.restore("auth.dump"));
print(`restored ${r.ops} ops with root token ${r.root_token}`);
let root = pachd::connect(#{ context: "new", token: r.root_token });
print(`whoami ${root.whoami().username}`);
for op in backup::open("auth.dump") {
    if op.kind == "activate_enterprise" || op.kind == "restore_auth_token" { print(op.to_map()); }
}
try { pachd::connect(#{ context: "dead", connect_timeout: 1 }); } catch (e) { print(e.message); }
try { kube::connect(#{ context: "old" }).get("service", "pachd"); } catch (e) { print(e.message); }
print(`kube token ${arg("kube_token")}`);
let bucket = store::open("s3://backups", #{ endpoint: "http://127.0.0.1:9",
    access_key_id: "AKIDTEST", secret_access_key: arg("s3_secret") });
print(`s3 secret ${arg("s3_secret")}`);
print(`session ${arg("session")}`);
r
"#,
    );
    let kubeconfig_text = kubeconfig.display().to_string();
    let out = ankus_async(
        dir.path(),
        &config,
        &[
            "run",
            "./secrets.rhai",
            "--output",
            "json",
            "-a",
            &format!("kube_token={kube_token}"),
            "-a",
            &format!("s3_secret={s3_secret}"),
            "-a",
            &format!("session={session_token}"),
        ],
        &[("KUBECONFIG", &kubeconfig_text)],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json on stdout");
    assert_eq!(document["result"]["ops"], 631);
    assert_eq!(document["result"]["root_token"], "***");

    // The one line meant for the user carries the token; it is pach:root's.
    let shown: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.contains("Generated a new root auth token"))
        .collect();
    assert_eq!(shown.len(), 1, "{}", out.stderr);
    let root_token = shown[0].rsplit("Token: ").next().expect("token").trim();
    assert_eq!(root_token.len(), 32, "{}", shown[0]);
    assert!(out.stderr.contains("restored 631 ops with root token ***"));
    assert!(out.stderr.contains("whoami pach:root"), "{}", out.stderr);
    assert!(out.stderr.contains("kube token ***"), "{}", out.stderr);
    assert!(out.stderr.contains("s3 secret ***"), "{}", out.stderr);
    assert!(out.stderr.contains("session ***"), "{}", out.stderr);

    let journal = std::fs::read_to_string(dir.path().join(".ankus/secrets.journal.json"))
        .expect("the journal was written");
    let everything = [
        ("stdout", out.stdout.as_str()),
        ("journal", journal.as_str()),
    ];
    let secrets = [
        activation_code(),
        session_token.to_owned(),
        s3_secret.to_owned(),
        kube_token.to_owned(),
        root_token.to_owned(),
    ];
    for (what, text) in everything {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows {secret}:\n{text}"
            );
        }
    }
    let stderr_without_the_reveal: String = out
        .stderr
        .lines()
        .filter(|line| !line.contains("Generated a new root auth token"))
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &secrets {
        assert!(
            !stderr_without_the_reveal.contains(secret.as_str()),
            "stderr shows {secret}:\n{stderr_without_the_reveal}"
        );
    }
    assert!(
        stderr_without_the_reveal.contains(r#"#{"activation_code": "***"}"#),
        "{stderr_without_the_reveal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_with_server_cas_reaches_a_tls_pachd_and_other_cas_are_refused() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ankus test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let other_ca = rcgen::CertifiedIssuer::self_signed(
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("params"),
        rcgen::KeyPair::generate().expect("key"),
    )
    .expect("other CA");

    let bucket = temp_dir();
    let cluster = ankus::sandbox::pachd::Cluster::open(ankus::sandbox::pachd::ClusterConfig::new(
        "tls",
        "1.11".parse().expect("version"),
        &bucket.path().join("bucket"),
    ))
    .expect("cluster");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let (cert, key) = (leaf.pem(), leaf_key.serialize_pem());
    let serving = cluster.clone();
    tokio::spawn(async move {
        serving
            .serve_tls(
                listener,
                cert.as_bytes(),
                key.as_bytes(),
                stopped.cancelled(),
            )
            .await
    });
    let _stop = stop.drop_guard();

    use base64::Engine as _;
    let encode = |pem: String| base64::engine::general_purpose::STANDARD.encode(pem);
    let dir = temp_dir();
    let contexts = serde_json::json!({ "v2": { "active_context": "tls", "contexts": {
        "tls": { "pachd_address": format!("grpcs://localhost:{port}"), "server_cas": encode(ca.pem()) },
        "wrong-ca": { "pachd_address": format!("grpcs://localhost:{port}"), "server_cas": encode(other_ca.pem()) },
    }}});
    let config = dir.path().join("pachctl-config.json");
    std::fs::write(&config, contexts.to_string()).expect("write config");
    write(
        dir.path(),
        "tls.rhai",
        r#"let c = pachd::connect("tls");
print(`${c.address()} ${c.version()}`);
c.create_repo("over-tls");
print(c.repos().map(|r| r.name));
try { pachd::connect("wrong-ca"); } catch (e) { print(`${e.kind}: refused`); }
"#,
    );
    let out = ankus_async(dir.path(), &config, &["run", "./tls.rhai"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("grpcs://localhost:{port} 1.11.9\n[\"over-tls\"]\nunavailable: refused\n"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("plaintext"),
        "no plaintext warning over TLS: {}",
        out.stderr
    );
    assert!(cluster.lock().repos.contains_key("over-tls"));
}

/// Regression (#20): the sandbox's kube token is `ankus-sandbox`, so every path of a
/// `run --sandbox` (its folder is `/tmp/ankus-sandbox-XXXX`) printed as `/tmp/***-XXXX/...`.
/// A secret is masked where it stands whole, never inside a path or a name.
#[test]
fn paths_that_contain_a_secrets_text_are_printed_as_they_are() {
    let dir = crate::support::temp_dir();
    let script = crate::support::write(
        dir.path(),
        "where.rhai",
        "//! Prints where the sandbox's backup goes.\n//! sandbox: backup=backup\nkube::connect(\"old\").get(\"service\", \"pachd\"); arg(\"backup\")",
    );
    let out = crate::support::ankus_in(
        dir.path(),
        &[
            "run",
            script.to_str().expect("utf-8"),
            "--sandbox",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("ankus-sandbox-") && !out.stdout.contains("***-"),
        "{}",
        out.stdout
    );
}
