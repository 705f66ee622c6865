//! S3 credentials the way operators keep them: `~/.aws/credentials` and `~/.aws/config` files
//! under a temporary HOME, `AWS_PROFILE`, a `credential_process` script, and an assume-role
//! profile answered by a loopback STS endpoint, against a real `s3s-fs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::s3_faults::{FaultProxy, Plan};
use crate::store::{ACCESS_KEY, S3Server, SECRET_KEY, ankus_env};
use crate::support::{temp_dir, write};

/// A script that writes one object and lists the bucket, printing `key size`.
const PUT_AND_LIST: &str = r#"
let bucket = store::open("s3://creds");
bucket.put_text("hello.txt", "hi");
for entry in bucket.list() { print(`${entry.key} ${entry.size}`); }
"#;

/// The environment of a run whose credentials come only from files under `home`.
fn home_env(server: &S3Server, home: &Path, profile: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HOME", home.display().to_string()),
        ("AWS_ENDPOINT_URL", server.endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        // Off EC2 the chain's last step would only wait for a metadata service.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    if let Some(profile) = profile {
        env.push(("AWS_PROFILE", profile.to_owned()));
    }
    env
}

fn run(dir: &Path, env: &[(&str, String)], body: &str) -> crate::support::Outcome {
    let script = write(dir, "creds.rhai", body);
    ankus_env(dir, &["run", script.to_str().expect("utf-8")], env)
}

#[test]
fn a_profile_in_aws_credentials_selected_by_aws_profile_opens_s3() {
    let server = S3Server::start(&["creds"]);
    let home = temp_dir();
    // The default profile's keys are wrong: only the profile AWS_PROFILE names works.
    write(
        &home.path().join(".aws"),
        "credentials",
        &format!(
            "[default]\naws_access_key_id = wrong-key\naws_secret_access_key = wrong-secret\n\n\
             [backups]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    );
    let dir = temp_dir();
    let outcome = run(
        dir.path(),
        &home_env(&server, home.path(), Some("backups")),
        PUT_AND_LIST,
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "hello.txt 2");
    assert_eq!(server.bucket_files("creds"), ["hello.txt"]);
    assert!(!outcome.stderr.contains(SECRET_KEY), "{}", outcome.stderr);

    let with_default = run(
        dir.path(),
        &home_env(&server, home.path(), None),
        &format!("try {{ {PUT_AND_LIST} }} catch (e) {{ print(`${{e.kind}}|${{e.message}}`); }}"),
    );
    assert!(
        // s3s-fs answers an unknown key id with AccessDenied.
        with_default
            .stdout
            .starts_with("permission_denied|put s3://creds/hello.txt: access denied"),
        "the default profile's wrong key is what was used: {}",
        with_default.stdout
    );
}

#[test]
fn a_credential_process_in_aws_config_gives_the_keys() {
    let server = S3Server::start(&["creds"]);
    let home = temp_dir();
    let helper = write(
        home.path(),
        "creds-helper.sh",
        &format!(
            "#!/bin/sh\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{ACCESS_KEY}\", \
             \"SecretAccessKey\": \"{SECRET_KEY}\"}}'\n"
        ),
    );
    make_executable(&helper);
    write(
        &home.path().join(".aws"),
        "config",
        &format!(
            "[profile vault]\nregion = us-east-1\ncredential_process = {}\n",
            helper.display()
        ),
    );
    let dir = temp_dir();
    let outcome = run(
        dir.path(),
        &home_env(&server, home.path(), Some("vault")),
        PUT_AND_LIST,
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "hello.txt 2");
    assert!(!outcome.stderr.contains(SECRET_KEY), "{}", outcome.stderr);

    // A helper that fails is reported as the chain's failure, naming the profile.
    let failing = write(
        home.path(),
        "failing.sh",
        "#!/bin/sh\necho locked >&2\nexit 3\n",
    );
    make_executable(&failing);
    write(
        &home.path().join(".aws"),
        "config",
        &format!(
            "[profile vault]\ncredential_process = {}\n",
            failing.display()
        ),
    );
    let failed = run(
        dir.path(),
        &home_env(&server, home.path(), Some("vault")),
        &format!("try {{ {PUT_AND_LIST} }} catch (e) {{ print(`${{e.kind}}|${{e.message}}`); }}"),
    );
    assert!(
        failed
            .stdout
            .starts_with("unauthenticated|put s3://creds/hello.txt: get credentials from the AWS chain (profile 'vault')"),
        "{}",
        failed.stdout
    );
}

#[test]
fn an_assume_role_profile_signs_with_the_role_sts_gives_for_the_source_profile() {
    let server = S3Server::start(&["creds"]);
    let sts = AwsPeer::start();
    let home = temp_dir();
    write(
        &home.path().join(".aws"),
        "credentials",
        "[base]\naws_access_key_id = base-key-id\naws_secret_access_key = base-secret\n",
    );
    write(
        &home.path().join(".aws"),
        "config",
        "[profile ops]\nrole_arn = arn:aws:iam::123456789012:role/backup\nsource_profile = base\n",
    );
    let mut env = home_env(&server, home.path(), Some("ops"));
    env.push(("AWS_ENDPOINT_URL_STS", sts.endpoint.clone()));
    let dir = temp_dir();
    let outcome = run(dir.path(), &env, PUT_AND_LIST);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "hello.txt 2");
    let calls = sts.calls();
    assert_eq!(calls.len(), 1, "credentials are cached: {calls:?}");
    assert!(calls[0].contains("Action=AssumeRole"), "{}", calls[0]);
    assert!(
        calls[0].contains("backup") && calls[0].contains("Credential=base-key-id/"),
        "the source profile signs the AssumeRole call: {}",
        calls[0]
    );

    // STS refusing: the error says which profile's chain failed.
    drop(sts);
    let failed = run(
        dir.path(),
        &env,
        &format!("try {{ {PUT_AND_LIST} }} catch (e) {{ print(`${{e.kind}}|${{e.message}}`); }}"),
    );
    assert!(
        failed.stdout.starts_with("unauthenticated|")
            && failed.stdout.contains("AWS chain (profile 'ops')"),
        "{}",
        failed.stdout
    );
}

#[test]
fn instance_metadata_is_the_chains_last_step_without_an_imds_option() {
    let server = S3Server::start(&["creds"]);
    let metadata = AwsPeer::start();
    let home = temp_dir();
    let mut env: Vec<_> = home_env(&server, home.path(), None)
        .into_iter()
        .filter(|(name, _)| *name != "AWS_EC2_METADATA_DISABLED")
        .collect();
    env.push((
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        metadata.endpoint.clone(),
    ));
    let dir = temp_dir();
    let outcome = run(dir.path(), &env, PUT_AND_LIST);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "hello.txt 2");
    let paths: Vec<String> = metadata
        .calls()
        .iter()
        .filter_map(|call| call.split(' ').next().map(str::to_owned))
        .collect();
    assert!(
        paths.contains(&"/latest/meta-data/iam/security-credentials/backup-role".to_owned()),
        "{paths:?}"
    );
}

#[test]
fn no_credentials_anywhere_is_an_error_on_first_use_naming_the_chain() {
    let server = S3Server::start(&["creds"]);
    let home = temp_dir();
    let dir = temp_dir();
    let failed = run(
        dir.path(),
        &home_env(&server, home.path(), None),
        r#"try { for o in store::open("s3://creds").list() { print(o); } } catch (e) { print(`${e.kind}|${e.message}`); }"#,
    );
    assert!(
        failed
            .stdout
            .starts_with("unauthenticated|list s3://creds: get credentials from the AWS chain (profile 'default')"),
        "{}",
        failed.stdout
    );
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A loopback AWS endpoint for the credential services: as STS it answers every AssumeRole,
/// as the instance metadata service it serves a token and one role's credentials, always the
/// `s3s-fs` keys; it records each request (path, Authorization header, body).
struct AwsPeer {
    endpoint: String,
    calls: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl AwsPeer {
    fn start() -> AwsPeer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("sts runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sts");
        listener.set_nonblocking(true).expect("nonblocking");
        let address: SocketAddr = listener.local_addr().expect("sts address");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let recorded = Arc::clone(&recorded);
                        async move { assume_role(&recorded, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AwsPeer {
            endpoint: format!("http://{address}"),
            calls,
            runtime: Some(runtime),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for AwsPeer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn assume_role(
    recorded: &Mutex<Vec<String>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    recorded
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(format!(
            "{path} {authorization} {}",
            String::from_utf8_lossy(&body)
        ));
    let expiration = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 3600)
        .map_err(std::io::Error::other)?;
    let imds = match path.as_str() {
        "/latest/api/token" => Some("imds-session-token".to_owned()),
        "/latest/meta-data/iam/security-credentials/" => Some("backup-role".to_owned()),
        "/latest/meta-data/iam/security-credentials/backup-role" => Some(format!(
            "{{\"Code\": \"Success\", \"LastUpdated\": \"{expiration}\", \"Type\": \"AWS-HMAC\", \
             \"AccessKeyId\": \"{ACCESS_KEY}\", \"SecretAccessKey\": \"{SECRET_KEY}\", \
             \"Token\": \"instance-session-token\", \"Expiration\": \"{expiration}\"}}"
        )),
        _ => None,
    };
    if let Some(text) = imds {
        return Response::builder()
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .body(Full::new(Bytes::from(text)))
            .map_err(std::io::Error::other);
    }
    let answer = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/backup/s</Arn>\
         <AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>\
         <Credentials><AccessKeyId>{ACCESS_KEY}</AccessKeyId><SecretAccessKey>{SECRET_KEY}</SecretAccessKey>\
         <SessionToken>role-session-token</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
         </AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>"
    );
    Response::builder()
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(answer)))
        .map_err(std::io::Error::other)
}

/// Seeds `bucket` of `server` with a small and a 6 MiB object, as files on disk (so no
/// write goes through a proxy in front of it).
fn seed_two_objects(server: &S3Server, bucket: &str) {
    let dir = server.root.path().join(bucket);
    write(&dir, "small.txt", "small");
    std::fs::write(dir.join("big.bin"), crate::support::noise(6 << 20, 19)).expect("write big");
}

/// The requests that read a copy source (`x-amz-copy-source`) or create a multipart upload.
fn copy_requests(proxy: &FaultProxy) -> Vec<(String, hyper::HeaderMap)> {
    proxy
        .requests()
        .into_iter()
        .filter(|(line, headers)| {
            headers.contains_key("x-amz-copy-source")
                || (line.starts_with("POST ") && line.ends_with("?uploads"))
        })
        .collect()
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("(none)")
}

#[test]
fn server_side_copies_keep_the_encryption_storage_class_and_checksum_of_the_store() {
    let server = S3Server::start(&["old", "new"]);
    seed_two_objects(&server, "old");
    let proxy = FaultProxy::start(&server.endpoint, Plan::PassThrough);
    let dir = temp_dir();
    let outcome = run(
        dir.path(),
        &proxy.env(&server),
        r#"
        let options = #{
            server_side_encryption: "aws:kms",
            sse_kms_key_id: "arn:aws:kms:us-east-1:123456789012:key/backups",
            sse_bucket_key_enabled: true,
            storage_class: "REDUCED_REDUNDANCY",
            checksum_algorithm: "sha256",
        };
        let report = store::open("s3://old", options).sync_to("s3://new", #{ copy_cutoff: 1048576, copy_part_size: 5242880 });
        print(`${report.copied} ${report.server_side}`);
        // s3s-fs accepts only STANDARD and REDUCED_REDUNDANCY on PutObject.
        store::open("s3://new", options).put_text("direct.txt", "x");
        "#,
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "2 2");
    assert_eq!(
        server.bucket_files("new"),
        ["big.bin", "direct.txt", "small.txt"]
    );
    let (_, direct) = proxy
        .requests()
        .into_iter()
        .find(|(line, _)| line.starts_with("PUT /new/direct.txt"))
        .expect("a PutObject");
    assert_eq!(header(&direct, "x-amz-storage-class"), "REDUCED_REDUNDANCY");
    assert_eq!(header(&direct, "x-amz-server-side-encryption"), "aws:kms");

    let copies = copy_requests(&proxy);
    let object_copy = copies
        .iter()
        .find(|(line, _)| line.starts_with("PUT /new/small.txt") && !line.contains("partNumber"))
        .expect("a CopyObject of small.txt");
    let upload = copies
        .iter()
        .find(|(line, _)| line.starts_with("POST /new/big.bin?uploads"))
        .expect("a multipart upload of big.bin");
    for (line, headers) in [object_copy, upload] {
        assert_eq!(
            header(headers, "x-amz-server-side-encryption"),
            "aws:kms",
            "{line}"
        );
        assert_eq!(
            header(headers, "x-amz-server-side-encryption-aws-kms-key-id"),
            "arn:aws:kms:us-east-1:123456789012:key/backups",
            "{line}"
        );
        assert_eq!(
            header(headers, "x-amz-server-side-encryption-bucket-key-enabled"),
            "true",
            "{line}"
        );
        assert_eq!(
            header(headers, "x-amz-storage-class"),
            "REDUCED_REDUNDANCY",
            "{line}"
        );
        assert_eq!(
            header(headers, "x-amz-checksum-algorithm"),
            "SHA256",
            "{line}"
        );
    }
    let parts = copies
        .iter()
        .filter(|(line, _)| line.starts_with("PUT /new/big.bin?partNumber"))
        .count();
    assert_eq!(parts, 2, "6 MiB in 5 MiB parts");
}

#[test]
fn server_side_copies_send_both_sse_c_keys() {
    let server = S3Server::start(&["old", "new"]);
    seed_two_objects(&server, "old");
    let proxy = FaultProxy::start(&server.endpoint, Plan::PassThrough);
    let source_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    let target_key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="; // 32 bytes
    let dir = temp_dir();
    let outcome = run(
        dir.path(),
        &proxy.env(&server),
        &format!(
            r#"
        let source = store::open("s3://old", #{{ server_side_encryption: "sse-c", sse_customer_key_base64: "{source_key}" }});
        let report = source.sync_to("s3://new", #{{
            copy_cutoff: 1048576,
            copy_part_size: 5242880,
            dst_options: #{{ server_side_encryption: "sse-c", sse_customer_key_base64: "{target_key}" }},
        }});
        print(`${{report.copied}} ${{report.server_side}}`);
        "#
        ),
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "2 2");
    assert!(
        !outcome.stdout.contains(source_key) && !outcome.stderr.contains(target_key),
        "keys are secrets"
    );
    let copies = copy_requests(&proxy);
    let reads: Vec<_> = copies
        .iter()
        .filter(|(_, headers)| headers.contains_key("x-amz-copy-source"))
        .collect();
    assert_eq!(reads.len(), 3, "one CopyObject and two UploadPartCopy");
    for (line, headers) in reads {
        assert_eq!(
            header(
                headers,
                "x-amz-copy-source-server-side-encryption-customer-key"
            ),
            source_key,
            "{line}"
        );
        assert_eq!(
            header(
                headers,
                "x-amz-copy-source-server-side-encryption-customer-algorithm"
            ),
            "AES256",
            "{line}"
        );
        assert_eq!(
            header(headers, "x-amz-server-side-encryption-customer-key"),
            target_key,
            "{line}"
        );
        assert_ne!(
            header(headers, "x-amz-server-side-encryption-customer-key-MD5"),
            "(none)",
            "{line}"
        );
    }
}

#[test]
fn one_tls_crypto_provider_is_linked_ring_and_not_aws_lc() {
    // object_store's default cloud features and aws-config's default HTTPS client each bring
    // aws-lc-rs next to the ring that kube, tonic and rustls use here.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: std::collections::BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split(' ').next())
        .collect();
    assert!(crates.contains("ring"), "{crates:?}");
    assert!(
        !crates.contains("aws-lc-rs") && !crates.contains("aws-lc-sys"),
        "aws-lc is linked too: cargo tree -i aws-lc-rs -e normal"
    );
}

#[test]
fn the_region_of_the_aws_profile_signs_the_requests() {
    let server = S3Server::start(&["creds"]);
    let proxy = FaultProxy::start(&server.endpoint, Plan::PassThrough);
    let home = temp_dir();
    write(
        &home.path().join(".aws"),
        "config",
        &format!(
            "[profile eu]\nregion = eu-west-1\naws_access_key_id = {ACCESS_KEY}\n\
             aws_secret_access_key = {SECRET_KEY}\n"
        ),
    );
    let env: Vec<_> = home_env(&server, home.path(), Some("eu"))
        .into_iter()
        .filter(|(name, _)| *name != "AWS_REGION")
        .map(|(name, value)| match name {
            "AWS_ENDPOINT_URL" => (name, proxy.endpoint.clone()),
            _ => (name, value),
        })
        .collect();
    let dir = temp_dir();
    let outcome = run(dir.path(), &env, PUT_AND_LIST);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), "hello.txt 2");
    let (line, put) = proxy
        .requests()
        .into_iter()
        .find(|(line, _)| line.starts_with("PUT /creds/hello.txt"))
        .expect("a PutObject");
    assert!(
        header(&put, "authorization").contains("/eu-west-1/s3/aws4_request"),
        "{line}: {}",
        header(&put, "authorization")
    );
}
