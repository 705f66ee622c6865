//! The AWS default credential chain as an `object_store` credential provider: what the AWS
//! CLI and SDKs read, in their order (environment, the `~/.aws/config` and
//! `~/.aws/credentials` profile named by `AWS_PROFILE` with its `credential_process`, SSO
//! cached token or `role_arn` + `source_profile`, web identity, the container endpoint, and
//! last the instance metadata service). The chain itself is `aws-config`'s; this module only
//! builds it over a ring-based HTTPS client, caches what it answers until shortly before it
//! expires, and turns its failures into store errors that name the profile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls;
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// The chain found no credentials, or a step of it failed (a profile that does not exist, a
/// `credential_process` that exits non-zero, an expired SSO token, STS refusing a role).
#[derive(Debug, thiserror::Error)]
#[error("get credentials from the AWS chain (profile '{profile}'): {detail}")]
pub struct ChainError {
    /// The profile the chain read (`AWS_PROFILE`, or `default`).
    pub profile: String,
    /// What the chain said, its causes included.
    pub detail: String,
}

struct Cached {
    credential: Arc<AwsCredential>,
    expires: Option<SystemTime>,
}

/// The AWS default credential chain for one S3 store, built on first use (building it reads
/// no file and makes no request) and asked again only when its answer is about to expire.
pub struct AwsChain {
    profile: String,
    region: String,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for AwsChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsChain")
            .field("profile", &self.profile)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsChain {
    /// The chain for a store in `region` (STS and SSO requests go to that region too).
    pub fn new(region: &str) -> AwsChain {
        let profile = std::env::var("AWS_PROFILE")
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        AwsChain {
            profile,
            region: region.to_owned(),
            chain: tokio::sync::OnceCell::new(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn chain(&self) -> &DefaultCredentialsChain {
        self.chain
            .get_or_init(|| async {
                let http_client = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let config = ProviderConfig::without_region()
                    .with_http_client(http_client)
                    .with_behavior_version(Some(BehaviorVersion::latest()));
                DefaultCredentialsChain::builder()
                    .configure(config)
                    // The store's region: otherwise the chain would look for one itself,
                    // instance metadata included.
                    .region(Region::new(self.region.clone()))
                    .build()
                    .await
            })
            .await
    }

    async fn credential(&self) -> Result<Arc<AwsCredential>, ChainError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref() {
            let fresh = current
                .expires
                .is_none_or(|expires| SystemTime::now() + REFRESH_BEFORE_EXPIRY < expires);
            if fresh {
                return Ok(Arc::clone(&current.credential));
            }
        }
        let credentials = self
            .chain()
            .await
            .provide_credentials()
            .await
            .map_err(|error| ChainError {
                profile: self.profile.clone(),
                detail: crate::kind::chain_text(&error),
            })?;
        crate::redact::register(credentials.secret_access_key());
        if let Some(token) = credentials.session_token() {
            crate::redact::register(token);
        }
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        *cached = Some(Cached {
            credential: Arc::clone(&credential),
            expires: credentials.expiry(),
        });
        Ok(credential)
    }
}

// `CredentialProvider` is declared with `async_trait`; this is its expanded signature,
// written out as in `http.rs`.
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    fn get_credential<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = object_store::Result<Arc<AwsCredential>>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.credential()
                .await
                .map_err(|error| object_store::Error::Unauthenticated {
                    path: String::new(),
                    source: Box::new(error),
                })
        })
    }
}
