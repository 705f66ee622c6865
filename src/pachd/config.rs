//! pachctl's config file and context resolution, read exactly as pachctl 1.9.11–1.13 does
//! (`config.Read`, `NewOnUserMachine`), except that nothing is ever written back. A context
//! with no address (as `pachctl deploy` makes them) is reached as pachctl reaches it: through
//! a port-forward to a pachd pod ([`PortForward`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::address::{PachdAddress, Transport};
use super::error::PachdError;

/// The file pachctl 1.12+ prefers when it exists (mounted into pachctl containers).
pub const SYSTEM_CONFIG: &str = "/pachctl/config.json";

/// The environment the resolver reads, passed in explicitly so tests need not touch the
/// process environment.
#[derive(Clone, Debug, Default)]
pub struct ConfigEnv {
    /// `$PACH_CONFIG`; set (even to a missing file) means that file.
    pub pach_config: Option<String>,
    /// `$PACH_CONTEXT`: overrides `v2.active_context`.
    pub pach_context: Option<String>,
    /// `$PACHD_ADDRESS`: overrides the active context's address.
    pub pachd_address: Option<String>,
    /// `$PACH_CA_CERTS`: comma-separated PEM files or directories (only with `grpcs://`
    /// `$PACHD_ADDRESS`).
    pub pach_ca_certs: Option<String>,
    /// The home directory (`~/.pachyderm/config.json`).
    pub home: Option<PathBuf>,
    /// Where pachctl's system-wide config lives; [`SYSTEM_CONFIG`] outside tests.
    pub system_config: PathBuf,
}

impl ConfigEnv {
    /// The process environment.
    pub fn from_process() -> Self {
        ConfigEnv {
            pach_config: std::env::var("PACH_CONFIG").ok(),
            pach_context: std::env::var("PACH_CONTEXT").ok(),
            pachd_address: std::env::var("PACHD_ADDRESS").ok(),
            pach_ca_certs: std::env::var("PACH_CA_CERTS").ok(),
            home: dirs::home_dir(),
            system_config: PathBuf::from(SYSTEM_CONFIG),
        }
    }

    /// The config path pachctl would use: `$PACH_CONFIG`, else `/pachctl/config.json` if it
    /// exists, else `~/.pachyderm/config.json`.
    pub fn config_path(&self) -> Result<PathBuf, PachdError> {
        if let Some(path) = &self.pach_config {
            if path.is_empty() {
                return Err(PachdError::Config {
                    path: "$PACH_CONFIG".to_owned(),
                    reason: "PACH_CONFIG is set but empty".to_owned(),
                });
            }
            return Ok(PathBuf::from(path));
        }
        if self.system_config.is_file() {
            return Ok(self.system_config.clone());
        }
        match &self.home {
            Some(home) => Ok(home.join(".pachyderm").join("config.json")),
            None => Err(PachdError::Config {
                path: "~/.pachyderm/config.json".to_owned(),
                reason: "the home directory is unknown".to_owned(),
            }),
        }
    }
}

/// One pachctl context (`config.Context`), only the fields a client uses.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Context {
    /// `pachd_address`.
    pub pachd_address: String,
    /// `server_cas`: base64 of a PEM bundle.
    pub server_cas: String,
    /// `session_token`: sent as `authn-token`.
    pub session_token: String,
    /// `active_transaction`: sent as `pach-transaction`.
    pub active_transaction: String,
    /// `cluster_deployment_id` (1.10+).
    pub cluster_deployment_id: String,
    /// `cluster_name`: the kubeconfig cluster of the implicit port-forward.
    pub cluster_name: String,
    /// `auth_info`: the kubeconfig user of the implicit port-forward.
    pub auth_info: String,
    /// `namespace`: where the implicit port-forward looks for the pachd pod.
    pub namespace: String,
    /// `port_forwarders`: service name → local port.
    pub port_forwarders: BTreeMap<String, u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigV2 {
    active_context: String,
    contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigV1 {
    pachd_address: String,
    server_cas: String,
    session_token: String,
    active_transaction: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    v1: Option<ConfigV1>,
    v2: Option<ConfigV2>,
}

/// The parsed config: contexts by name and the active one.
#[derive(Debug, Default)]
pub struct PachConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// Whether the file exists (pachctl treats a missing one as empty).
    pub exists: bool,
    /// `v2.active_context` (or `default` for a v1 file).
    pub active_context: String,
    /// The contexts, by name.
    pub contexts: BTreeMap<String, Context>,
}

impl PachConfig {
    /// Reads `path`; a missing file is an empty config, as for pachctl.
    pub fn read(path: &Path) -> Result<PachConfig, PachdError> {
        let fail = |reason: String| PachdError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PachConfig {
                    path: path.to_path_buf(),
                    ..PachConfig::default()
                });
            }
            Err(error) => return Err(fail(error.to_string())),
        };
        let file: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_json::from_str(&text).map_err(|error| fail(format!("invalid JSON: {error}")))?
        };
        let mut config = PachConfig {
            path: path.to_path_buf(),
            exists: true,
            ..PachConfig::default()
        };
        match (file.v2, file.v1) {
            (Some(v2), _) => {
                config.active_context = v2.active_context;
                config.contexts = v2.contexts;
            }
            // pachctl 1.9.1+ migrates a v1 config into the context `default`.
            (None, Some(v1)) => {
                config.active_context = "default".to_owned();
                config.contexts.insert(
                    "default".to_owned(),
                    Context {
                        pachd_address: v1.pachd_address,
                        server_cas: v1.server_cas,
                        session_token: v1.session_token,
                        active_transaction: v1.active_transaction,
                        ..Context::default()
                    },
                );
            }
            (None, None) => {}
        }
        for context in config.contexts.values() {
            crate::redact::register(&context.session_token);
        }
        Ok(config)
    }

    fn context(&self, name: &str) -> Result<&Context, PachdError> {
        self.contexts
            .get(name)
            .ok_or_else(|| PachdError::UnknownContext {
                name: name.to_owned(),
                path: self.path.display().to_string(),
                known: self.contexts.keys().cloned().collect(),
            })
    }
}

/// What to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// pachctl's active context (`$PACH_CONTEXT` or `v2.active_context`), with
    /// `$PACHD_ADDRESS` overriding its address.
    Active,
    /// A named context; the environment overrides do not apply.
    Context(String),
    /// An address; no config is read.
    Address(String),
    /// A named context reached at another address (token, CAs and deployment ID from the
    /// context).
    ContextAt {
        /// The context.
        context: String,
        /// The address to use instead of the context's.
        address: String,
    },
}

impl Target {
    /// A context name or an address. An address has a scheme (`grpc://h:650`), or is
    /// `HOST:PORT` with one colon and a numeric port, or `[IPv6]:PORT`; anything else is a
    /// context name, colons and all (EKS contexts are ARNs such as
    /// `arn:aws:eks:us-east-1:123456789012:cluster/prod`).
    pub fn from_name_or_address(text: &str) -> Target {
        let host_port = |text: &str| match text.rsplit_once(':') {
            Some((host, port)) => {
                let bracketed = host.starts_with('[') && host.ends_with(']');
                !host.is_empty()
                    && (bracketed || !host.contains(':'))
                    && !host.contains('/')
                    && !port.is_empty()
                    && port.bytes().all(|byte| byte.is_ascii_digit())
            }
            None => false,
        };
        if text.contains("://") || host_port(text) {
            Target::Address(text.to_owned())
        } else {
            Target::Context(text.to_owned())
        }
    }
}

/// The port pachd serves its gRPC API on inside its pod, which the implicit port-forward
/// reaches (pachctl's `RunForDaemon(0, 650)`).
pub const PACHD_POD_PORT: u16 = 650;

/// How pachctl reaches a context that has no address: a port-forward to a pachd pod, through
/// the kubeconfig's current context with the pachctl context's `cluster_name` and
/// `auth_info` in place of its cluster and user (`config.KubeConfig`'s overrides), to a pod
/// labelled `suite=pachyderm,app=pachd` in the pachctl context's `namespace`, else
/// `default` (the kube context's own namespace is not used, as in `NewPortForwarder`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortForward {
    /// The kubeconfig cluster to use instead of the current context's.
    pub cluster_name: Option<String>,
    /// The kubeconfig user to use instead of the current context's.
    pub auth_info: Option<String>,
    /// The namespace of the pachd pod.
    pub namespace: String,
    /// The pod port.
    pub port: u16,
}

/// Everything needed to open the connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedContext {
    /// The context used, if any.
    pub context: Option<String>,
    /// The config file read, if any.
    pub config_path: Option<PathBuf>,
    /// Where pachd is.
    pub address: PachdAddress,
    /// PEM bundles to trust instead of the system roots (TLS only).
    pub ca_pems: Vec<Vec<u8>>,
    /// The session token.
    pub session_token: Option<String>,
    /// The active transaction.
    pub active_transaction: Option<String>,
    /// The context's `cluster_deployment_id`, checked after connecting.
    pub cluster_deployment_id: Option<String>,
    /// Where the address came from, for messages (`$PACHD_ADDRESS`, a context, ...).
    pub address_source: String,
    /// Set when pachd is reached through a port-forward to its pod; `address` is then only
    /// the name the channel is opened under.
    pub port_forward: Option<PortForward>,
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Resolves `target` against the config at `explicit_config` (the host's preset path, which
/// wins) or the one `env` points at.
pub fn resolve(
    env: &ConfigEnv,
    explicit_config: Option<&Path>,
    target: &Target,
) -> Result<ResolvedContext, PachdError> {
    if let Target::Address(text) = target {
        return address_only(text);
    }
    let path = match explicit_config {
        Some(path) => path.to_path_buf(),
        None => env.config_path()?,
    };
    let mut config = PachConfig::read(&path)?;
    let env_address = env.pachd_address.clone().filter(|text| !text.is_empty());
    if !config.exists && matches!(target, Target::Active) && env_address.is_some() {
        // pachctl makes a missing config a `default` context with no address, which
        // $PACHD_ADDRESS then fills (pachctl also writes the file back; ankus writes nothing).
        config.active_context = "default".to_owned();
        config
            .contexts
            .insert("default".to_owned(), Context::default());
    }
    let (name, address_override) = match target {
        Target::Active => {
            let name = match &env.pach_context {
                // As pachctl: a set but empty $PACH_CONTEXT names no context.
                Some(name) if name.is_empty() => {
                    return Err(PachdError::Config {
                        path: path.display().to_string(),
                        reason: "$PACH_CONTEXT is set but empty, which names no context (unset \
                                 it to use the active context)"
                            .to_owned(),
                    });
                }
                Some(name) => name.clone(),
                None => config.active_context.clone(),
            };
            if name.is_empty() {
                return Err(PachdError::Config {
                    path: path.display().to_string(),
                    reason: if config.exists {
                        "no active context (set v2.active_context or $PACH_CONTEXT)".to_owned()
                    } else {
                        "the file does not exist, so there is no active context".to_owned()
                    },
                });
            }
            (name, None)
        }
        Target::Context(name) => (name.clone(), None),
        Target::ContextAt { context, address } => (context.clone(), Some(address.clone())),
        Target::Address(text) => return address_only(text),
    };
    let context = config.context(&name)?;
    let mut resolved = ResolvedContext {
        context: Some(name.clone()),
        config_path: Some(path.clone()),
        address: PachdAddress {
            transport: Transport::Plaintext,
            host: String::new(),
            port: 0,
        },
        ca_pems: Vec::new(),
        session_token: non_empty(&context.session_token),
        active_transaction: non_empty(&context.active_transaction),
        cluster_deployment_id: non_empty(&context.cluster_deployment_id),
        address_source: format!("context {name:?}"),
        port_forward: None,
    };
    let env_address = match target {
        Target::Active => env_address,
        _ => None,
    };
    if let Some(text) = address_override {
        resolved.address = PachdAddress::parse(&text)?;
        resolved.address_source = "the given address".to_owned();
        if resolved.address.transport == Transport::Tls {
            resolved.ca_pems = context_cas(&name, context)?;
        }
    } else if let Some(text) = env_address {
        resolved.address = PachdAddress::parse(&text)?;
        resolved.address_source = "$PACHD_ADDRESS".to_owned();
        resolved.ca_pems = env_cas(env, &resolved.address)?;
    } else if !context.pachd_address.is_empty() || !context.server_cas.is_empty() {
        let address = PachdAddress::parse(&context.pachd_address)?;
        if !context.server_cas.is_empty() && address.transport != Transport::Tls {
            return Err(PachdError::NoAddress {
                context: name,
                reason: "must set pachd_address to grpcs://... if server_cas is set".to_owned(),
            });
        }
        if address.transport == Transport::Tls {
            resolved.ca_pems = env_cas(env, &address)?;
            resolved.ca_pems.extend(context_cas(&name, context)?);
        }
        resolved.address = address;
    } else if let Some(port) = context.port_forwarders.get("pachd") {
        let port = u16::try_from(*port).map_err(|_| PachdError::NoAddress {
            context: name.clone(),
            reason: format!("port_forwarders.pachd {port} is not a port"),
        })?;
        resolved.address = PachdAddress {
            transport: Transport::Plaintext,
            host: "localhost".to_owned(),
            port,
        };
        resolved.address_source = format!("context {name:?} (port_forwarders.pachd)");
    } else {
        let forward = PortForward {
            cluster_name: non_empty(&context.cluster_name),
            auth_info: non_empty(&context.auth_info),
            namespace: non_empty(&context.namespace).unwrap_or_else(|| "default".to_owned()),
            port: PACHD_POD_PORT,
        };
        resolved.address = PachdAddress {
            transport: Transport::Plaintext,
            host: "localhost".to_owned(),
            port: PACHD_POD_PORT,
        };
        resolved.address_source = format!(
            "context {name:?} (no pachd_address: a port-forward to the pachd pod in namespace {})",
            forward.namespace
        );
        resolved.port_forward = Some(forward);
    }
    Ok(resolved)
}

fn address_only(text: &str) -> Result<ResolvedContext, PachdError> {
    Ok(ResolvedContext {
        context: None,
        config_path: None,
        address: PachdAddress::parse(text)?,
        ca_pems: Vec::new(),
        session_token: None,
        active_transaction: None,
        cluster_deployment_id: None,
        address_source: "the given address".to_owned(),
        port_forward: None,
    })
}

fn context_cas(name: &str, context: &Context) -> Result<Vec<Vec<u8>>, PachdError> {
    if context.server_cas.is_empty() {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(context.server_cas.trim())
        .map(|pem| vec![pem])
        .map_err(|error| PachdError::NoAddress {
            context: name.to_owned(),
            reason: format!("server_cas is not valid base64: {error}"),
        })
}

fn env_cas(env: &ConfigEnv, address: &PachdAddress) -> Result<Vec<Vec<u8>>, PachdError> {
    let Some(list) = env.pach_ca_certs.as_deref().filter(|list| !list.is_empty()) else {
        return Ok(Vec::new());
    };
    if address.transport != Transport::Tls {
        return Err(PachdError::Tls {
            address: address.qualified(),
            reason: "PACH_CA_CERTS is set but the address is not grpcs://".to_owned(),
        });
    }
    let mut pems = Vec::new();
    for item in list.split(',').filter(|item| !item.is_empty()) {
        let path = Path::new(item);
        let read = |file: &Path| {
            std::fs::read(file).map_err(|error| PachdError::Tls {
                address: address.qualified(),
                reason: format!("read PACH_CA_CERTS file {}: {error}", file.display()),
            })
        };
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|error| PachdError::Tls {
                address: address.qualified(),
                reason: format!("read PACH_CA_CERTS directory {item}: {error}"),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|file| file.is_file())
                .collect();
            files.sort();
            for file in files {
                pems.push(read(&file)?);
            }
        } else {
            pems.push(read(path)?);
        }
    }
    Ok(pems)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        fn write(&self, relative: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
            path
        }

        /// An environment with nothing set, a home inside the fixture and no system config.
        fn env(&self) -> ConfigEnv {
            ConfigEnv {
                home: Some(self.dir.path().join("home")),
                system_config: self.dir.path().join("system/config.json"),
                ..ConfigEnv::default()
            }
        }
    }

    const TWO_CONTEXTS: &str = r#"{
        "user_id": "u",
        "v2": {
            "active_context": "old",
            "contexts": {
                "old": {"pachd_address": "grpc://10.0.0.1:650", "session_token": "tok-old",
                        "active_transaction": "txn", "cluster_deployment_id": "dep-old"},
                "new": {"pachd_address": "localhost:31650"},
                "fwd": {"port_forwarders": {"pachd": 40650}},
                "bare": {"source": 3}
            },
            "metrics": true
        }
    }"#;

    #[test]
    fn config_path_prefers_pach_config_even_when_missing_then_system_then_home() {
        let fixture = Fixture::new();
        let mut env = fixture.env();
        let home_path = fixture.dir.path().join("home/.pachyderm/config.json");
        assert_eq!(env.config_path().expect("path"), home_path);
        let system = fixture.write("system/config.json", "{}");
        assert_eq!(env.config_path().expect("path"), system);
        env.pach_config = Some("/nonexistent/pach.json".to_owned());
        assert_eq!(
            env.config_path().expect("path"),
            PathBuf::from("/nonexistent/pach.json")
        );
        env.pach_config = Some(String::new());
        assert!(env.config_path().is_err());
    }

    #[test]
    fn explicit_config_path_wins_over_the_environment() {
        let fixture = Fixture::new();
        let explicit = fixture.write("explicit.json", TWO_CONTEXTS);
        let mut env = fixture.env();
        env.pach_config = Some(fixture.write("env.json", "{}").display().to_string());
        let resolved =
            resolve(&env, Some(&explicit), &Target::Context("new".into())).expect("resolves");
        assert_eq!(resolved.address.qualified(), "grpc://localhost:31650");
        assert_eq!(resolved.config_path.as_deref(), Some(explicit.as_path()));
    }

    #[test]
    fn active_context_comes_from_the_file_or_pach_context() {
        let fixture = Fixture::new();
        let mut env = fixture.env();
        env.pach_config = Some(fixture.write("c.json", TWO_CONTEXTS).display().to_string());
        let active = resolve(&env, None, &Target::Active).expect("resolves");
        assert_eq!(active.context.as_deref(), Some("old"));
        assert_eq!(active.address.qualified(), "grpc://10.0.0.1:650");
        assert_eq!(active.session_token.as_deref(), Some("tok-old"));
        assert_eq!(active.active_transaction.as_deref(), Some("txn"));
        assert_eq!(active.cluster_deployment_id.as_deref(), Some("dep-old"));
        env.pach_context = Some("new".to_owned());
        let overridden = resolve(&env, None, &Target::Active).expect("resolves");
        assert_eq!(overridden.context.as_deref(), Some("new"));
        assert_eq!(overridden.session_token, None);
        env.pach_context = Some("gone".to_owned());
        let error = resolve(&env, None, &Target::Active).expect_err("unknown");
        assert!(
            error
                .to_string()
                .contains("known contexts are bare, fwd, new, old"),
            "{error}"
        );
    }

    #[test]
    fn pachd_address_overrides_only_the_active_context() {
        let fixture = Fixture::new();
        let mut env = fixture.env();
        env.pach_config = Some(fixture.write("c.json", TWO_CONTEXTS).display().to_string());
        env.pachd_address = Some("127.0.0.1:9999".to_owned());
        let active = resolve(&env, None, &Target::Active).expect("resolves");
        assert_eq!(active.address.qualified(), "grpc://127.0.0.1:9999");
        assert_eq!(active.session_token.as_deref(), Some("tok-old"));
        assert_eq!(active.cluster_deployment_id.as_deref(), Some("dep-old"));
        assert_eq!(active.address_source, "$PACHD_ADDRESS");
        let named = resolve(&env, None, &Target::Context("old".into())).expect("resolves");
        assert_eq!(named.address.qualified(), "grpc://10.0.0.1:650");
    }

    #[test]
    fn unknown_context_lists_the_known_ones_and_the_file() {
        let fixture = Fixture::new();
        let path = fixture.write("c.json", TWO_CONTEXTS);
        let env = fixture.env();
        let error = resolve(&env, Some(&path), &Target::Context("prod".into())).expect_err("no");
        assert_eq!(
            error.to_string(),
            format!(
                "find pachctl context \"prod\" in {}: known contexts are bare, fwd, new, old",
                path.display()
            )
        );
        let missing = fixture.dir.path().join("missing.json");
        let error = resolve(&env, Some(&missing), &Target::Context("old".into())).expect_err("no");
        assert!(
            error.to_string().ends_with("known contexts are none"),
            "{error}"
        );
    }

    #[test]
    fn port_forwarder_and_missing_address_rules() {
        let fixture = Fixture::new();
        let path = fixture.write("c.json", TWO_CONTEXTS);
        let env = fixture.env();
        let fwd = resolve(&env, Some(&path), &Target::Context("fwd".into())).expect("resolves");
        assert_eq!(fwd.address.qualified(), "grpc://localhost:40650");
        let bare = resolve(&env, Some(&path), &Target::Context("bare".into())).expect("resolves");
        assert_eq!(
            bare.port_forward,
            Some(PortForward {
                cluster_name: None,
                auth_info: None,
                namespace: "default".to_owned(),
                port: 650,
            })
        );
    }

    #[test]
    fn a_pachctl_deploy_context_without_an_address_resolves_to_a_port_forward() {
        // What `pachctl deploy` (contextCreate) writes: the kube context's cluster and user,
        // the namespace deployed to, and no address.
        let fixture = Fixture::new();
        let path = fixture.write(
            "config.json",
            r#"{"user_id":"u","v2":{"active_context":"local","contexts":{"local":{
                "source":3,"cluster_name":"kind-pach","auth_info":"kind-pach-admin",
                "namespace":"pachyderm","cluster_deployment_id":"dep-1"}},"metrics":true}}"#,
        );
        let resolved = resolve(&fixture.env(), Some(&path), &Target::Active).expect("resolves");
        assert_eq!(
            resolved.port_forward,
            Some(PortForward {
                cluster_name: Some("kind-pach".to_owned()),
                auth_info: Some("kind-pach-admin".to_owned()),
                namespace: "pachyderm".to_owned(),
                port: 650,
            })
        );
        assert_eq!(resolved.cluster_deployment_id.as_deref(), Some("dep-1"));
        assert!(
            resolved.address_source.contains("port-forward"),
            "{}",
            resolved.address_source
        );
    }

    #[test]
    fn server_cas_require_grpcs_and_decode_from_base64() {
        let fixture = Fixture::new();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        let text = format!(
            r#"{{"v2":{{"active_context":"tls","contexts":{{
                "tls":{{"pachd_address":"grpcs://pachd.example.com:31400","server_cas":"{encoded}"}},
                "plain":{{"pachd_address":"grpc://pachd.example.com:650","server_cas":"{encoded}"}},
                "bad":{{"pachd_address":"grpcs://h:1","server_cas":"%%%"}}}}}}}}"#
        );
        let path = fixture.write("c.json", &text);
        let env = fixture.env();
        let tls = resolve(&env, Some(&path), &Target::Active).expect("resolves");
        assert_eq!(tls.address.transport, Transport::Tls);
        assert_eq!(tls.ca_pems, vec![pem.as_bytes().to_vec()]);
        let plain = resolve(&env, Some(&path), &Target::Context("plain".into())).expect_err("no");
        assert!(plain.to_string().contains("grpcs://"), "{plain}");
        let bad = resolve(&env, Some(&path), &Target::Context("bad".into())).expect_err("no");
        assert!(bad.to_string().contains("base64"), "{bad}");
    }

    #[test]
    fn pach_ca_certs_only_with_a_grpcs_pachd_address() {
        let fixture = Fixture::new();
        let path = fixture.write("c.json", TWO_CONTEXTS);
        let ca = fixture.write("cas/a.pem", "PEM-A");
        fixture.write("cas/b.pem", "PEM-B");
        let mut env = fixture.env();
        env.pach_ca_certs = Some(format!(
            "{},{}",
            ca.display(),
            fixture.dir.path().join("cas").display()
        ));
        env.pachd_address = Some("grpcs://h:1".to_owned());
        let resolved = resolve(&env, Some(&path), &Target::Active).expect("resolves");
        assert_eq!(
            resolved.ca_pems,
            vec![b"PEM-A".to_vec(), b"PEM-A".to_vec(), b"PEM-B".to_vec()]
        );
        env.pachd_address = Some("grpc://h:1".to_owned());
        assert!(resolve(&env, Some(&path), &Target::Active).is_err());
    }

    #[test]
    fn v1_config_becomes_the_default_context() {
        let fixture = Fixture::new();
        let path = fixture.write(
            "c.json",
            r#"{"user_id":"u","v1":{"pachd_address":"1.2.3.4:30650","session_token":"t1"}}"#,
        );
        let env = fixture.env();
        let resolved = resolve(&env, Some(&path), &Target::Active).expect("resolves");
        assert_eq!(resolved.context.as_deref(), Some("default"));
        assert_eq!(resolved.address.qualified(), "grpc://1.2.3.4:30650");
        assert_eq!(resolved.session_token.as_deref(), Some("t1"));
    }

    #[test]
    fn missing_file_has_no_active_context_and_bad_json_names_the_file() {
        let fixture = Fixture::new();
        let env = fixture.env();
        let missing = fixture.dir.path().join("none.json");
        let error = resolve(&env, Some(&missing), &Target::Active).expect_err("no");
        assert!(error.to_string().contains("does not exist"), "{error}");
        let bad = fixture.write("bad.json", "{not json");
        let error = resolve(&env, Some(&bad), &Target::Active).expect_err("no");
        assert!(error.to_string().contains("invalid JSON"), "{error}");
        assert!(error.to_string().contains("bad.json"), "{error}");
    }

    #[test]
    fn pachd_address_without_a_config_file_makes_the_default_context_as_pachctl_does() {
        let fixture = Fixture::new();
        let mut env = fixture.env();
        env.pachd_address = Some("10.1.2.3:30650".to_owned());
        let missing = fixture.dir.path().join("none.json");
        let resolved = resolve(&env, Some(&missing), &Target::Active).expect("resolves");
        assert_eq!(resolved.context.as_deref(), Some("default"));
        assert_eq!(resolved.address.qualified(), "grpc://10.1.2.3:30650");
        assert_eq!(resolved.address_source, "$PACHD_ADDRESS");
        assert!(!missing.exists(), "ankus writes no config");
    }

    #[test]
    fn an_empty_pach_context_is_an_error_as_in_pachctl() {
        let fixture = Fixture::new();
        let path = fixture.write("config.json", TWO_CONTEXTS);
        let mut env = fixture.env();
        env.pach_context = Some(String::new());
        let error = resolve(&env, Some(&path), &Target::Active).expect_err("refused");
        assert!(
            error.to_string().contains("$PACH_CONTEXT is set but empty"),
            "{error}"
        );
    }

    #[test]
    fn context_names_with_colons_are_names_not_addresses() {
        let arn = "arn:aws:eks:us-east-1:123456789012:cluster/prod";
        assert_eq!(
            Target::from_name_or_address(arn),
            Target::Context(arn.into())
        );
        assert_eq!(
            Target::from_name_or_address("gke_project_europe-west1_prod"),
            Target::Context("gke_project_europe-west1_prod".into())
        );
        assert_eq!(
            Target::from_name_or_address("ctx:staging"),
            Target::Context("ctx:staging".into())
        );
        for address in [
            "10.0.0.1:30650",
            "pachd.example.com:650",
            "[::1]:650",
            "grpcs://h:443",
        ] {
            assert_eq!(
                Target::from_name_or_address(address),
                Target::Address(address.into()),
                "{address}"
            );
        }
    }

    #[test]
    fn address_targets_read_no_config_and_names_pick_contexts() {
        assert_eq!(
            Target::from_name_or_address("old"),
            Target::Context("old".into())
        );
        assert_eq!(
            Target::from_name_or_address("localhost:650"),
            Target::Address("localhost:650".into())
        );
        assert_eq!(
            Target::from_name_or_address("grpc://h"),
            Target::Address("grpc://h".into())
        );
        let env = ConfigEnv {
            pach_config: Some(String::new()),
            ..ConfigEnv::default()
        };
        let resolved = resolve(&env, None, &Target::Address("grpc://h:1".into())).expect("ok");
        assert_eq!(resolved.config_path, None);
        assert_eq!(resolved.session_token, None);
    }
}
