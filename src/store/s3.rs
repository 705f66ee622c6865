//! S3 specifics: building the `object_store` client from the environment and options the way
//! the AWS tools read them, and the requests `object_store` does not make: server-side copy
//! between two buckets (CopyObject, and UploadPartCopy above the single-copy limit), and
//! listings that ask for pages larger than 1,000 keys (`object_store` cannot set `max-keys`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use object_store::RetryConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequest};

use super::error::{StoreError, describe_s3_code, s3_error_code};
use super::http::{
    CountingConnector, TransientCounter, client_options, is_transient_status, request_timeout,
};
use super::location::{StoreOptions, StoreUrl, option_bool};
use crate::kind::Kind;

/// The largest object a single CopyObject may copy.
pub const MAX_SINGLE_COPY: u64 = 5 << 30;

/// Keys asked for per ListObjectsV2 request of an S3-compatible endpoint unless the
/// `list_page` option says otherwise. MinIO and Ceph answer at most 1,000 whatever is asked;
/// servers that allow more (s3s-fs, Ceph with a raised `rgw_max_listing_results`) then
/// answer in fewer requests, and some of them walk the whole bucket for every page; one that
/// refuses the size is asked for 1,000 from then on.
pub const DEFAULT_LIST_PAGE: u32 = 10_000;

/// The page size every S3 server accepts. AWS S3 itself (no `endpoint`, or an
/// `amazonaws.com` one) never answers more, so it is asked for just that.
const STANDARD_LIST_PAGE: u32 = 1_000;

/// Attempts per list request when the failure is transient (5xx, SlowDown, a dropped or
/// timed-out connection).
const LIST_ATTEMPTS: u32 = 5;

/// Where an S3 bucket lives and how to sign requests to it.
pub struct S3Target {
    endpoint: String,
    region: String,
    bucket: String,
    virtual_hosted: bool,
    anonymous: bool,
    credentials: object_store::aws::AwsCredentialProvider,
    http: HttpClient,
    /// Keys asked for per list request; lowered to 1,000 for good if the server refuses more.
    list_page: AtomicU32,
    /// What the store's writes carry, so server-side copies into it carry it too.
    writes: WriteHeaders,
    /// The `storage_class` option, which object_store's own writes get as an attribute.
    storage_class: Option<String>,
}

/// The headers of the options a store was opened with that every write into it must carry:
/// object_store sends them on its own writes, our copy requests send them on theirs.
#[derive(Clone, Default)]
struct WriteHeaders {
    /// SSE-S3 / SSE-KMS (`x-amz-server-side-encryption`, the KMS key id, the bucket-key
    /// flag), `x-amz-storage-class` and `x-amz-checksum-algorithm`: on CopyObject and
    /// CreateMultipartUpload.
    object: Vec<(&'static str, String)>,
    /// SSE-C (algorithm, key, key MD5): on every request that writes or reads object data,
    /// UploadPartCopy and CompleteMultipartUpload included; with the `x-amz-copy-source-`
    /// prefix when this store is a copy's source.
    customer_key: Vec<(&'static str, String)>,
    /// Whether the object's parts carry a SHA-256 the completion must repeat.
    sha256: bool,
}

impl WriteHeaders {
    /// Reads the encryption, storage class and checksum settings `builder` was configured
    /// with (from options or the environment) and `storage_class`.
    fn of(
        url: &StoreUrl,
        builder: &AmazonS3Builder,
        storage_class: Option<String>,
    ) -> Result<WriteHeaders, StoreError> {
        let config = |name: &str| {
            name.parse::<AmazonS3ConfigKey>()
                .ok()
                .and_then(|key| builder.get_config_value(&key))
        };
        let bad = |key: &str, reason: &str| StoreError::BadOption {
            url: url.to_string(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let mut headers = WriteHeaders::default();
        match config("aws_server_side_encryption").as_deref() {
            None => {}
            Some("sse-c") => {
                let key = config("aws_sse_customer_key_base64").ok_or_else(|| {
                    bad(
                        "aws_server_side_encryption",
                        "is sse-c but aws_sse_customer_key_base64 is not set",
                    )
                })?;
                let decoded =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key)
                        .map_err(|_| bad("aws_sse_customer_key_base64", "is not base64"))?;
                let digest = <md5::Md5 as md5::Digest>::digest(&decoded);
                let key_md5 =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
                headers.customer_key = vec![
                    (
                        "x-amz-server-side-encryption-customer-algorithm",
                        "AES256".to_owned(),
                    ),
                    ("x-amz-server-side-encryption-customer-key", key),
                    ("x-amz-server-side-encryption-customer-key-MD5", key_md5),
                ];
            }
            Some(kind) => {
                headers
                    .object
                    .push(("x-amz-server-side-encryption", kind.to_owned()));
                if let Some(key_id) = config("aws_sse_kms_key_id") {
                    headers
                        .object
                        .push(("x-amz-server-side-encryption-aws-kms-key-id", key_id));
                }
                if let Some(enabled) = config("aws_sse_bucket_key_enabled") {
                    headers
                        .object
                        .push(("x-amz-server-side-encryption-bucket-key-enabled", enabled));
                }
            }
        }
        if let Some(class) = storage_class {
            headers.object.push(("x-amz-storage-class", class));
        }
        if let Some(algorithm) = config("aws_checksum_algorithm") {
            headers.sha256 = algorithm.eq_ignore_ascii_case("sha256");
            headers
                .object
                .push(("x-amz-checksum-algorithm", algorithm.to_ascii_uppercase()));
        }
        Ok(headers)
    }

    /// The SSE-C headers a copy reading from this store sends.
    fn as_copy_source(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.customer_key.iter().map(|(name, value)| {
            (
                name.replacen("x-amz-", "x-amz-copy-source-", 1),
                value.clone(),
            )
        })
    }
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

const KNOWN_OPTIONS: &str = "endpoint, region, access_key_id, secret_access_key, session_token, \
    path_style, virtual_hosted_style, allow_http, anonymous, imds, request_timeout, create, list_page, \
    storage_class, server_side_encryption, sse_kms_key_id, sse_bucket_key_enabled, \
    sse_customer_key_base64, checksum_algorithm, or any aws_* key";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Builds the S3 client and the copy target for `url`. Both count their transient failures
/// into `counter`.
pub fn build(
    url: &StoreUrl,
    options: &StoreOptions,
    retry: RetryConfig,
    counter: &TransientCounter,
) -> Result<(AmazonS3, S3Target), StoreError> {
    let bad = |key: &str, reason: &str| StoreError::BadOption {
        url: url.to_string(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Some(secret) = env(name) {
            crate::redact::register(&secret);
        }
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
    let mut endpoint = env("AWS_ENDPOINT_URL_S3")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"));
    let mut region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
    let mut anonymous = false;
    let mut virtual_hosted = false;
    let mut allow_http = None;
    let mut option_key = None;
    let mut option_secret = None;
    let mut list_page = None;
    let mut storage_class = None;
    for (key, value) in options {
        match key.as_str() {
            "endpoint" | "endpoint_url" => endpoint = Some(value.clone()),
            "region" => region = Some(value.clone()),
            "access_key_id" => option_key = Some(value.clone()),
            "secret_access_key" => option_secret = Some(value.clone()),
            "session_token" => builder = builder.with_token(value),
            "path_style" => virtual_hosted = !option_bool(url, key, value)?,
            "virtual_hosted_style" => virtual_hosted = option_bool(url, key, value)?,
            "allow_http" => allow_http = Some(option_bool(url, key, value)?),
            "anonymous" => anonymous = option_bool(url, key, value)?,
            "imds" => {
                // Kept for scripts written when instance metadata had to be asked for: the
                // chain always ends with it (AWS_EC2_METADATA_DISABLED=true skips it).
                option_bool(url, key, value)?;
            }
            "create" | "request_timeout" => {}
            "storage_class" => storage_class = Some(value.clone()),
            "server_side_encryption"
            | "sse_kms_key_id"
            | "sse_bucket_key_enabled"
            | "sse_customer_key_base64"
            | "checksum_algorithm" => {
                let config_key: AmazonS3ConfigKey = key
                    .parse()
                    .map_err(|_| bad(key, &format!("is unknown; known: {KNOWN_OPTIONS}")))?;
                builder = builder.with_config(config_key, value);
            }
            "list_page" => {
                let page = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|page| (1..=1_000_000).contains(page))
                    .ok_or_else(|| {
                        bad(
                            key,
                            &format!("must be a number of keys from 1 to 1000000 (got '{value}')"),
                        )
                    })?;
                list_page = Some(page);
            }
            other if other.starts_with("aws_") => {
                let config_key: AmazonS3ConfigKey = other
                    .parse()
                    .map_err(|_| bad(other, &format!("is unknown; known: {KNOWN_OPTIONS}")))?;
                builder = builder.with_config(config_key, value);
            }
            other => return Err(bad(other, &format!("is unknown; known: {KNOWN_OPTIONS}"))),
        }
    }
    match (option_key, option_secret) {
        (Some(key_id), Some(secret)) => {
            builder = builder
                .with_access_key_id(key_id)
                .with_secret_access_key(secret);
        }
        (None, None) => {}
        (Some(_), None) => return Err(bad("access_key_id", "needs secret_access_key too")),
        (None, Some(_)) => return Err(bad("secret_access_key", "needs access_key_id too")),
    }
    let region = region
        .or_else(profile_region)
        .unwrap_or_else(|| "us-east-1".to_owned());
    let endpoint = match endpoint {
        Some(endpoint) => {
            let endpoint = endpoint.trim_end_matches('/').to_owned();
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(bad("endpoint", "must start with http:// or https://"));
            }
            if endpoint.starts_with("http://") && allow_http.is_none() {
                allow_http = Some(true);
            }
            builder = builder.with_endpoint(&endpoint);
            endpoint
        }
        None => format!("https://s3.{region}.amazonaws.com"),
    };
    let list_page = list_page.unwrap_or_else(|| default_list_page(&endpoint));
    builder = builder
        .with_region(&region)
        .with_virtual_hosted_style_request(virtual_hosted)
        .with_skip_signature(anonymous)
        .with_retry(retry);
    // Without a key of its own, a store asks the AWS default chain, as the AWS CLI does;
    // object_store's own fallbacks know neither profiles nor credential_process nor SSO.
    // A key (from the environment or the options) or an explicit object_store credential
    // source in the options is used as given.
    let own_source = [
        AmazonS3ConfigKey::AccessKeyId,
        AmazonS3ConfigKey::SecretAccessKey,
    ]
    .iter()
    .any(|key| builder.get_config_value(key).is_some())
        || options.keys().any(|key| {
            [
                "web_identity",
                "container_",
                "role_arn",
                "metadata_endpoint",
            ]
            .iter()
            .any(|source| key.contains(source))
        });
    if !(own_source || anonymous) {
        builder = builder.with_credentials(Arc::new(super::aws_chain::AwsChain::new(&region)));
    }
    if let Some(allow) = allow_http {
        builder = builder.with_allow_http(allow);
    }
    let timeout = request_timeout(url, options.get("request_timeout").map(String::as_str))?;
    let client_options = client_options(timeout)
        .with_allow_http(allow_http.unwrap_or(false))
        .with_pool_max_idle_per_host(256);
    builder = builder
        .with_client_options(client_options.clone())
        .with_http_connector(CountingConnector::new(counter.clone()));
    let writes = WriteHeaders::of(url, &builder, storage_class.clone())?;
    let store = builder
        .build()
        .map_err(|error| StoreError::from_object_store("open", url.to_string(), error))?;
    let http = CountingConnector::new(counter.clone())
        .connect(&client_options)
        .map_err(|error| StoreError::from_object_store("open", url.to_string(), error))?;
    let target = S3Target {
        credentials: Arc::clone(store.credentials()),
        endpoint,
        region,
        bucket: url.bucket.clone(),
        virtual_hosted,
        anonymous,
        http,
        list_page: AtomicU32::new(list_page),
        writes,
        storage_class,
    };
    Ok((store, target))
}

/// The `region` of the AWS profile (`AWS_PROFILE`, else `default`) in `~/.aws/config`, read
/// by aws-config's own profile parser, as the AWS CLI reads it.
fn profile_region() -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    let provider = aws_config::profile::ProfileFileRegionProvider::new();
    // The provider reads the profile files with std::fs and awaits nothing else: the future
    // is done on its first poll, so this neither needs nor blocks a tokio runtime.
    futures::executor::block_on(provider.region()).map(|region| region.to_string())
}

/// The page size asked of `endpoint` when the options do not say: 1,000 for AWS itself,
/// which caps at that, `DEFAULT_LIST_PAGE` for other servers.
fn default_list_page(endpoint: &str) -> u32 {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host == "amazonaws.com" || host.ends_with(".amazonaws.com") {
        STANDARD_LIST_PAGE
    } else {
        DEFAULT_LIST_PAGE
    }
}

/// Percent-encodes a key for a request path: everything but unreserved characters and `/`.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query-string value: everything but unreserved characters.
fn encode_query(value: &str) -> String {
    encode_key(value).replace('/', "%2F")
}

/// One object of a listing page, as S3 describes it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedObject {
    /// The full key (the store prefix included).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag with its quotes, when the server gives one.
    #[serde(default, rename = "ETag")]
    pub etag: Option<String>,
    /// RFC 3339 time of the last modification.
    #[serde(default)]
    pub last_modified: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedPrefix {
    prefix: String,
}

/// One ListObjectsV2 answer.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<ListedObject>,
    #[serde(default)]
    common_prefixes: Vec<ListedPrefix>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_continuation_token: Option<String>,
}

/// One page of a listing: objects, sub-folder prefixes (with a delimiter) and the token of
/// the next page, if any.
#[derive(Debug, Default)]
pub struct ListPage {
    /// The objects, in key order.
    pub objects: Vec<ListedObject>,
    /// The common prefixes (full, ending with the delimiter).
    pub prefixes: Vec<String>,
    /// The continuation token of the next page; `None` on the last page.
    pub next: Option<String>,
}

fn parse_list_page(text: &str) -> Result<ListPage, CopyFailure> {
    let result: ListBucketResult = quick_xml::de::from_str(text).map_err(|error| CopyFailure {
        status: None,
        code: None,
        detail: format!("unreadable ListObjectsV2 answer: {error}"),
    })?;
    let next = match (result.is_truncated, result.next_continuation_token) {
        (true, Some(token)) if !token.is_empty() => Some(token),
        (true, _) => {
            return Err(CopyFailure {
                status: None,
                code: None,
                detail: "truncated ListObjectsV2 answer without a continuation token".to_owned(),
            });
        }
        (false, _) => None,
    };
    Ok(ListPage {
        objects: result.contents,
        prefixes: result
            .common_prefixes
            .into_iter()
            .map(|prefix| prefix.prefix)
            .collect(),
        next,
    })
}

/// The `code` of a request that was never sent: the credential chain gave nothing.
const NO_CREDENTIALS: &str = "NoCredentials";

/// One failed request to S3, as the copy engine sees it.
#[derive(Debug)]
pub struct CopyFailure {
    /// HTTP status, if a response came back.
    pub status: Option<u16>,
    /// The S3 error code (`AccessDenied`, `SlowDown`, ...).
    pub code: Option<String>,
    /// A readable description.
    pub detail: String,
}

impl CopyFailure {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        if self.code.as_deref() == Some(NO_CREDENTIALS) {
            return false;
        }
        let status_says = match self.status {
            None => true,
            Some(status) => http::StatusCode::from_u16(status).is_ok_and(is_transient_status),
        };
        status_says || matches!(self.code.as_deref(), Some("SlowDown" | "InternalError"))
    }

    /// Whether the failure says server-side copy is not possible with these credentials or
    /// this server, so streaming should be used instead.
    pub fn rules_out_server_side(&self) -> bool {
        matches!(self.status, Some(403 | 501))
            || matches!(
                self.code.as_deref(),
                Some(
                    "AccessDenied"
                        | "NotImplemented"
                        | "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                )
            )
    }

    /// Converts into a store error naming the target.
    pub fn into_error(self, action: &'static str, target: String) -> StoreError {
        if let Some((kind, detail)) = self.code.as_deref().and_then(describe_s3_code) {
            return StoreError::Request {
                action,
                target,
                kind,
                detail,
            };
        }
        let kind = match (self.status, self.code.as_deref()) {
            (_, Some(NO_CREDENTIALS)) => Kind::Unauthenticated,
            (_, Some("SlowDown")) | (Some(500..=599), _) | (None, _) => Kind::Unavailable,
            (Some(404), _) => Kind::NotFound,
            (Some(403), _) => Kind::PermissionDenied,
            _ => Kind::Failed,
        };
        StoreError::Request {
            action,
            target,
            kind,
            detail: self.detail,
        }
    }
}

impl S3Target {
    /// The endpoint URL (no credentials).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The storage class objects are written with, when the store was opened with one.
    pub fn storage_class(&self) -> Option<&str> {
        self.storage_class.as_deref()
    }

    /// Whether a server-side copy from `source` into this bucket can be attempted: same
    /// endpoint and region, and requests are signed.
    pub fn can_copy_from(&self, source: &S3Target) -> bool {
        self.endpoint == source.endpoint
            && self.region == source.region
            && !self.anonymous
            && !source.anonymous
    }

    /// Lists one page of keys starting with `prefix` (the full key prefix, the store's own
    /// included), grouped at `/` when `delimited`, from `token` on. Transient failures are
    /// retried with backoff; a server that refuses pages above 1,000 keys is asked for 1,000
    /// from then on.
    pub async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<&str>,
    ) -> Result<ListPage, CopyFailure> {
        let mut attempt = 0;
        loop {
            let page = self.list_page.load(Ordering::Relaxed);
            let mut query = format!("list-type=2&max-keys={page}");
            if delimited {
                query.push_str("&delimiter=%2F");
            }
            if !prefix.is_empty() {
                query.push_str(&format!("&prefix={}", encode_query(prefix)));
            }
            if let Some(token) = token {
                query.push_str(&format!("&continuation-token={}", encode_query(token)));
            }
            let failure = match self
                .send(
                    http::Method::GET,
                    self.bucket_url(&query),
                    &[],
                    bytes::Bytes::new(),
                )
                .await
            {
                Ok((_, text)) => match parse_list_page(&text) {
                    Ok(page) => return Ok(page),
                    Err(failure) => failure,
                },
                Err(failure) => failure,
            };
            attempt += 1;
            // Servers word the refusal differently (InvalidArgument, InvalidRequest, ...): any
            // 400 to a large page is asked again with 1,000, which either works or fails for
            // the request's real fault.
            if page > STANDARD_LIST_PAGE && failure.status == Some(400) {
                self.list_page.store(STANDARD_LIST_PAGE, Ordering::Relaxed);
                continue;
            }
            if !failure.is_transient() || attempt >= LIST_ATTEMPTS {
                return Err(failure);
            }
            let backoff = Duration::from_millis(100 << attempt.min(5));
            tokio::time::sleep(backoff).await;
        }
    }

    /// The bucket's base URL: `scheme://bucket.host` (virtual-hosted) or
    /// `scheme://host/bucket` (path-style).
    fn base_url(&self) -> String {
        match (self.virtual_hosted, self.endpoint.split_once("://")) {
            (true, Some((scheme, host))) => format!("{scheme}://{}.{host}", self.bucket),
            (true, None) => self.endpoint.clone(),
            (false, _) => format!("{}/{}", self.endpoint, self.bucket),
        }
    }

    /// The URL of a request to the bucket itself (a listing).
    fn bucket_url(&self, query: &str) -> String {
        // A virtual-hosted bucket's root has the path `/`; path-style ends at the name.
        let slash = if self.virtual_hosted { "/" } else { "" };
        format!("{}{slash}?{query}", self.base_url())
    }

    fn object_url(&self, key: &str, query: &str) -> String {
        let base = format!("{}/{}", self.base_url(), encode_key(key));
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    async fn send(
        &self,
        method: http::Method,
        url: String,
        headers: &[(String, String)],
        body: bytes::Bytes,
    ) -> Result<(http::HeaderMap, String), CopyFailure> {
        let failure = |detail: String| CopyFailure {
            status: None,
            code: None,
            detail,
        };
        let mut builder = http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let mut request: HttpRequest = builder
            .body(body.into())
            .map_err(|error| failure(format!("build request: {error}")))?;
        let credential = self.credentials.get_credential().await.map_err(|error| {
            // The chain's own message (it names the profile); not a transient failure.
            match super::error::StoreError::from_object_store("sign", String::new(), error) {
                StoreError::Request {
                    kind: Kind::Unauthenticated,
                    detail,
                    ..
                } => CopyFailure {
                    status: None,
                    code: Some(NO_CREDENTIALS.to_owned()),
                    detail,
                },
                other => failure(format!("get credentials: {other}")),
            }
        })?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|error| failure(format!("sign request: {error}")))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|error| failure(format!("send request: {error}")))?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        let text = http_body_util::BodyExt::collect(body)
            .await
            .map(|collected| String::from_utf8_lossy(&collected.to_bytes()).into_owned())
            .map_err(|error| failure(format!("read response: {error}")))?;
        // S3 may answer a copy with 200 and an error document.
        if !status.is_success() || text.contains("<Error>") {
            let code = s3_error_code(&text);
            return Err(CopyFailure {
                status: Some(status.as_u16()),
                detail: match &code {
                    Some(code) => format!("{} {code}", status.as_u16()),
                    None => format!("status {}", status.as_u16()),
                },
                code,
            });
        }
        Ok((parts.headers, text))
    }

    fn copy_source(source: &S3Target, key: &str) -> String {
        format!("/{}/{}", source.bucket, encode_key(key))
    }

    /// The headers of a request that reads `source_key` from `source` into this bucket: the
    /// copy source, the source's SSE-C key, and this store's own SSE-C key.
    fn copy_headers(&self, source: &S3Target, source_key: &str) -> Vec<(String, String)> {
        let mut headers = vec![(
            "x-amz-copy-source".to_owned(),
            Self::copy_source(source, source_key),
        )];
        headers.extend(source.writes.as_copy_source());
        headers.extend(self.customer_key_headers());
        headers
    }

    fn customer_key_headers(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.writes
            .customer_key
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
    }

    /// The headers that create an object in this bucket: encryption, storage class, checksum.
    fn object_headers(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.writes
            .object
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
    }

    /// Copies `source_key` from `source` to `key` in this bucket with one CopyObject, with
    /// the encryption, storage class and checksum this store writes with.
    pub async fn copy_object(
        &self,
        source: &S3Target,
        source_key: &str,
        key: &str,
    ) -> Result<(), CopyFailure> {
        let mut headers = self.copy_headers(source, source_key);
        headers.extend(self.object_headers());
        self.send(
            http::Method::PUT,
            self.object_url(key, ""),
            &headers,
            bytes::Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Copies a large object with UploadPartCopy, `part_size` bytes per part, aborting the
    /// upload on any failure so no partial object remains. The upload is created with the
    /// encryption, storage class and checksum this store writes with.
    pub async fn copy_multipart(
        &self,
        source: &S3Target,
        source_key: &str,
        key: &str,
        size: u64,
        part_size: u64,
    ) -> Result<(), CopyFailure> {
        let create_headers: Vec<_> = self
            .object_headers()
            .chain(self.customer_key_headers())
            .collect();
        let (_, created) = self
            .send(
                http::Method::POST,
                self.object_url(key, "uploads"),
                &create_headers,
                bytes::Bytes::new(),
            )
            .await?;
        let upload_id = xml_value(&created, "UploadId").ok_or_else(|| CopyFailure {
            status: None,
            code: None,
            detail: "no UploadId in CreateMultipartUpload response".to_owned(),
        })?;
        let encoded_id = encode_key(&upload_id);
        let result = self
            .copy_parts(source, source_key, key, size, part_size, &encoded_id)
            .await;
        match result {
            Ok(parts) => {
                let mut body = String::from("<CompleteMultipartUpload>");
                for part in &parts {
                    body.push_str(&format!(
                        "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
                        part.number, part.etag
                    ));
                    if let Some(sha256) = &part.sha256 {
                        body.push_str(&format!("<ChecksumSHA256>{sha256}</ChecksumSHA256>"));
                    }
                    body.push_str("</Part>");
                }
                body.push_str("</CompleteMultipartUpload>");
                let complete_headers: Vec<_> = self.customer_key_headers().collect();
                let completed = self
                    .send(
                        http::Method::POST,
                        self.object_url(key, &format!("uploadId={encoded_id}")),
                        &complete_headers,
                        bytes::Bytes::from(body),
                    )
                    .await;
                if completed.is_err() {
                    self.abort(key, &encoded_id).await;
                }
                completed.map(|_| ())
            }
            Err(failure) => {
                self.abort(key, &encoded_id).await;
                Err(failure)
            }
        }
    }

    async fn copy_parts(
        &self,
        source: &S3Target,
        source_key: &str,
        key: &str,
        size: u64,
        part_size: u64,
        encoded_id: &str,
    ) -> Result<Vec<CopiedPart>, CopyFailure> {
        use futures::stream::{StreamExt, TryStreamExt};
        let part_size = part_size.max(1);
        let count = size.div_ceil(part_size).max(1);
        futures::stream::iter(1..=count)
            .map(|number| async move {
                let start = (number - 1) * part_size;
                let end = (start + part_size).min(size).saturating_sub(1);
                let mut headers = self.copy_headers(source, source_key);
                headers.push((
                    "x-amz-copy-source-range".to_owned(),
                    format!("bytes={start}-{end}"),
                ));
                let (_, text) = self
                    .send(
                        http::Method::PUT,
                        self.object_url(key, &format!("partNumber={number}&uploadId={encoded_id}")),
                        &headers,
                        bytes::Bytes::new(),
                    )
                    .await?;
                let etag = xml_value(&text, "ETag").ok_or_else(|| CopyFailure {
                    status: None,
                    code: None,
                    detail: format!("no ETag for part {number}"),
                })?;
                let sha256 = if self.writes.sha256 {
                    xml_value(&text, "ChecksumSHA256")
                } else {
                    None
                };
                Ok(CopiedPart {
                    number,
                    etag,
                    sha256,
                })
            })
            .buffered(4)
            .try_collect()
            .await
    }

    async fn abort(&self, key: &str, encoded_id: &str) {
        // Best effort: a failed abort leaves an incomplete upload, never a visible object.
        let _ = self
            .send(
                http::Method::DELETE,
                self.object_url(key, &format!("uploadId={encoded_id}")),
                &[],
                bytes::Bytes::new(),
            )
            .await;
    }
}

/// One part of a multipart copy, as CompleteMultipartUpload names it.
struct CopiedPart {
    number: u64,
    etag: String,
    /// The part's SHA-256, when the upload was created with that checksum algorithm.
    sha256: Option<String>,
}

/// The text of the first `<tag>` element in an XML document, entities decoded.
fn xml_value(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(
        text[start..end]
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_is_asked_for_the_1000_keys_it_answers_and_other_servers_for_more() {
        assert_eq!(
            default_list_page("https://s3.eu-west-1.amazonaws.com"),
            1_000
        );
        assert_eq!(
            default_list_page("https://bucket.s3.amazonaws.com:443/"),
            1_000
        );
        assert_eq!(
            default_list_page("http://127.0.0.1:9000"),
            DEFAULT_LIST_PAGE
        );
        assert_eq!(
            default_list_page("https://minio.example.com"),
            DEFAULT_LIST_PAGE
        );
        assert_eq!(
            default_list_page("https://notamazonaws.com"),
            DEFAULT_LIST_PAGE
        );
    }

    #[test]
    fn keys_are_encoded_for_request_paths() {
        assert_eq!(encode_key("a b/100%+ü"), "a%20b/100%25%2B%C3%BC");
    }

    #[test]
    fn query_values_encode_slashes_too() {
        assert_eq!(encode_query("a b/c+d"), "a%20b%2Fc%2Bd");
    }

    #[test]
    fn list_pages_decode_entities_prefixes_and_tokens() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><IsTruncated>true</IsTruncated><MaxKeys>2</MaxKeys>
  <Contents><Key>a &amp; b/ünï &lt;1&gt;</Key><LastModified>2026-11-22T08:38:24.000Z</LastModified>
    <ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>5</Size></Contents>
  <CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes>
  <Contents><Key>empty</Key><Size>0</Size></Contents>
  <NextContinuationToken>tok/en+1=</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_list_page(text).expect("a page");
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a & b/ünï <1>", "empty"]);
        assert_eq!(
            page.objects[0].etag.as_deref(),
            Some("\"0123456789abcdef0123456789abcdef\"")
        );
        assert_eq!(page.objects[1].size, 0);
        assert_eq!(page.prefixes, ["dir/"]);
        assert_eq!(page.next.as_deref(), Some("tok/en+1="));

        let last = parse_list_page(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .expect("an empty last page");
        assert!(last.objects.is_empty() && last.next.is_none());
    }

    #[test]
    fn a_truncated_page_without_a_token_is_an_error_not_the_end() {
        let failure =
            parse_list_page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
                .expect_err("no way to go on");
        assert!(
            failure.detail.contains("without a continuation token"),
            "{}",
            failure.detail
        );
        let garbage = parse_list_page("<html>oops").expect_err("not a listing");
        assert!(
            garbage
                .detail
                .starts_with("unreadable ListObjectsV2 answer"),
            "{}",
            garbage.detail
        );
    }

    #[test]
    fn xml_values_are_decoded() {
        let text = "<R><ETag>&quot;abc&quot;</ETag><UploadId>x</UploadId></R>";
        assert_eq!(xml_value(text, "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(xml_value(text, "UploadId").as_deref(), Some("x"));
        assert_eq!(xml_value(text, "Missing"), None);
    }
}
