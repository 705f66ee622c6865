//! `Bucket`: one store opened at a URL (a bucket and a key prefix), with the object
//! operations scripts use. Keys are relative to the URL's prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::error::StoreError;
use super::http::{CountingConnector, TransientCounter, client_options, request_timeout};
use super::location::{Scheme, StoreOptions, StoreUrl, option_bool};
use super::s3::S3Target;

/// What a listing or `head` says about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag without quotes, when the store gives one.
    pub etag: Option<String>,
    /// Last modification, RFC 3339 (UTC).
    pub last_modified: String,
}

impl Entry {
    /// Whether the ETag is a plain MD5 of the content (not multipart, not a local-file
    /// identity), so two of them can be compared across stores.
    pub fn content_md5(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|etag| etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// A store opened at a URL.
#[derive(Clone, Debug)]
pub struct Bucket {
    url: StoreUrl,
    store: Arc<dyn ObjectStore>,
    s3: Option<Arc<S3Target>>,
    transient: TransientCounter,
    /// For a `file://` store that does not follow symbolic links (the default): its
    /// directory. Keys whose path goes through a link are not listed and not opened, so a
    /// link inside the tree cannot lead a clone (or a script) out of it.
    no_links_below: Option<Arc<std::path::PathBuf>>,
}

/// Requests are retried by `object_store` a few times; the sync engine retries whole
/// objects on top, with adaptive concurrency.
fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(120),
        ..RetryConfig::default()
    }
}

static MEMORY_STORES: OnceLock<Mutex<HashMap<String, Arc<object_store::memory::InMemory>>>> =
    OnceLock::new();

fn memory_store(name: &str) -> Arc<object_store::memory::InMemory> {
    let stores = MEMORY_STORES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut stores = stores
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(object_store::memory::InMemory::new()))
        .clone()
}

impl Bucket {
    /// Opens `url` with `options` (see the module docs of `store` for the keys). No request
    /// is made: a missing bucket or bad credentials show on first use.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Bucket, StoreError> {
        for (key, value) in options {
            let key = key.to_ascii_lowercase();
            if [
                "secret",
                "token",
                "password",
                "sas",
                "credential",
                "customer_key",
            ]
            .iter()
            .any(|word| key.contains(word))
            {
                crate::redact::register(value);
            }
        }
        let url = StoreUrl::parse(url)?;
        let create = match options.get("create") {
            Some(value) => option_bool(&url, "create", value)?,
            None => false,
        };
        let transient = TransientCounter::default();
        let timeout = || request_timeout(&url, options.get("request_timeout").map(String::as_str));
        let cloud_option = |key: &&String| !["create", "request_timeout"].contains(&key.as_str());
        let mut no_links_below = None;
        let (store, s3): (Arc<dyn ObjectStore>, _) = match url.scheme {
            Scheme::S3 => {
                let (store, target) = super::s3::build(&url, options, retry_config(), &transient)?;
                (Arc::new(store), Some(Arc::new(target)))
            }
            Scheme::Gcs => {
                // Client options first, so client keys among the options still apply.
                let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&url.bucket)
                    .with_retry(retry_config())
                    .with_client_options(client_options(timeout()?))
                    .with_http_connector(CountingConnector::new(transient.clone()));
                for (key, value) in options.iter().filter(|(key, _)| cloud_option(key)) {
                    let config_key = key.parse().map_err(|_| StoreError::BadOption {
                        url: url.to_string(),
                        key: key.clone(),
                        reason: "is not a Google Cloud Storage option".to_owned(),
                    })?;
                    builder = builder.with_config(config_key, value);
                }
                let store = builder.build().map_err(|error| {
                    StoreError::from_object_store("open", url.to_string(), error)
                })?;
                (Arc::new(store), None)
            }
            Scheme::Azure => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&url.bucket)
                    .with_retry(retry_config())
                    .with_client_options(client_options(timeout()?))
                    .with_http_connector(CountingConnector::new(transient.clone()));
                if let Some(account) = &url.account {
                    builder = builder.with_account(account);
                }
                for (key, value) in options.iter().filter(|(key, _)| cloud_option(key)) {
                    let config_key = key.parse().map_err(|_| StoreError::BadOption {
                        url: url.to_string(),
                        key: key.clone(),
                        reason: "is not an Azure Blob Storage option".to_owned(),
                    })?;
                    builder = builder.with_config(config_key, value);
                }
                let store = builder.build().map_err(|error| {
                    StoreError::from_object_store("open", url.to_string(), error)
                })?;
                (Arc::new(store), None)
            }
            Scheme::File => {
                if let Some(key) = options
                    .keys()
                    .find(|key| !["create", "follow_symlinks"].contains(&key.as_str()))
                {
                    return Err(StoreError::BadOption {
                        url: url.to_string(),
                        key: key.clone(),
                        reason:
                            "is not an option of file:// stores (only create and follow_symlinks)"
                                .to_owned(),
                    });
                }
                let follow = match options.get("follow_symlinks") {
                    Some(value) => option_bool(&url, "follow_symlinks", value)?,
                    None => false,
                };
                let directory = std::path::PathBuf::from(&url.bucket);
                if create {
                    std::fs::create_dir_all(&directory).map_err(|source| StoreError::Io {
                        action: "create directory",
                        target: url.to_string(),
                        source,
                    })?;
                }
                if !directory.is_dir() {
                    return Err(StoreError::Request {
                        action: "open",
                        target: url.to_string(),
                        kind: crate::kind::Kind::NotFound,
                        detail: "no such directory".to_owned(),
                    });
                }
                let store = object_store::local::LocalFileSystem::new_with_prefix(&directory)
                    .map_err(|error| StoreError::from_object_store("open", url.to_string(), error))?
                    .with_automatic_cleanup(true);
                if !follow {
                    no_links_below = Some(Arc::new(directory));
                }
                (Arc::new(store), None)
            }
            Scheme::Memory => {
                if let Some(key) = options.keys().find(|key| key.as_str() != "create") {
                    return Err(StoreError::BadOption {
                        url: url.to_string(),
                        key: key.clone(),
                        reason: "is not an option of memory:// stores".to_owned(),
                    });
                }
                (memory_store(&url.bucket), None)
            }
        };
        Ok(Bucket {
            url,
            store,
            s3,
            transient,
            no_links_below,
        })
    }

    /// Whether the full key `full` of a `file://` store that does not follow links names a
    /// path through a symbolic link below the store's directory.
    fn through_link(&self, full: &str) -> bool {
        let Some(root) = &self.no_links_below else {
            return false;
        };
        let mut path = root.as_ref().clone();
        for part in full.split('/').filter(|part| !part.is_empty()) {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => return true,
                Ok(_) => {}
                // Nothing below a missing path can be a link.
                Err(_) => return false,
            }
        }
        false
    }

    /// Whether a listed entry (key relative to the prefix) is reached through a link.
    fn listed_through_link(&self, key: &str) -> bool {
        self.no_links_below.is_some() && self.through_link(&self.s3_prefix(key))
    }

    /// The URL this store was opened at (no credentials in it).
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// The underlying `object_store`, for streaming I/O.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Transient failures this store's requests have met since it was opened (see
    /// `TransientCounter`); always 0 for `file://` and `memory://` stores.
    pub fn transient_failures(&self) -> u64 {
        self.transient.get()
    }

    /// The attributes every object written to this store gets (the S3 `storage_class`
    /// option); object_store adds the encryption and checksum options itself.
    pub fn write_attributes(&self) -> object_store::Attributes {
        let mut attributes = object_store::Attributes::new();
        if let Some(class) = self.s3.as_deref().and_then(S3Target::storage_class) {
            attributes.insert(
                object_store::Attribute::StorageClass,
                class.to_owned().into(),
            );
        }
        attributes
    }

    /// The S3 endpoint and bucket, when this is an S3 store.
    pub(crate) fn s3(&self) -> Option<&Arc<S3Target>> {
        self.s3.as_ref()
    }

    /// A description for messages: the URL, plus the endpoint for S3.
    pub fn describe(&self) -> String {
        match &self.s3 {
            Some(target) => format!("{} (endpoint {})", self.url, target.endpoint()),
            None => self.url.to_string(),
        }
    }

    /// The store path of `key` (relative to the prefix). An empty key names the prefix
    /// itself, which is how an object URL (`s3://b/dumps/x.dump`) is addressed.
    pub fn path(&self, key: &str) -> Result<Path, StoreError> {
        let full = match (self.url.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => self.url.prefix.clone(),
            (false, false) => format!("{}/{key}", self.url.prefix),
        };
        if full.is_empty() {
            return Err(self.bad_key(key, "the key is empty"));
        }
        if full.starts_with('/') || full.ends_with('/') || full.contains("//") {
            return Err(self.bad_key(key, "keys cannot start or end with '/' or contain '//'"));
        }
        let path = Path::parse(&full).map_err(|_| {
            self.bad_key(
                key,
                "keys cannot contain control characters or '.'/'..' segments",
            )
        })?;
        if self.through_link(&full) {
            return Err(self.bad_key(
                key,
                "the path goes through a symbolic link (file:// stores follow links only with follow_symlinks: true)",
            ));
        }
        Ok(path)
    }

    fn bad_key(&self, key: &str, reason: &str) -> StoreError {
        StoreError::BadKey {
            url: self.url.to_string(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// The key of a store path, relative to the prefix.
    pub fn key_of(&self, path: &Path) -> String {
        self.relative_key(path.as_ref())
    }

    /// A full key made relative to the prefix.
    fn relative_key(&self, raw: &str) -> String {
        if self.url.prefix.is_empty() {
            return raw.to_owned();
        }
        raw.strip_prefix(self.url.prefix.as_str())
            .map(|rest| rest.trim_start_matches('/'))
            .unwrap_or(raw)
            .to_owned()
    }

    fn entry(&self, meta: ObjectMeta) -> Entry {
        Entry {
            key: self.key_of(&meta.location),
            size: meta.size,
            etag: meta.e_tag.map(|etag| etag.trim_matches('"').to_owned()),
            last_modified: jiff::Timestamp::from_millisecond(meta.last_modified.timestamp_millis())
                .map(|stamp| stamp.to_string())
                .unwrap_or_default(),
        }
    }

    fn fail(&self, action: &'static str, key: &str, error: object_store::Error) -> StoreError {
        StoreError::from_object_store(action, self.url.join(key), error)
    }

    /// Lists objects whose key starts with `prefix` (relative), lazily, page by page.
    /// A prefix ending in `/` lists that folder; otherwise keys are matched as text within
    /// the parent folder, as S3 does.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<Entry, StoreError>> {
        let (folder, filter) = match prefix.rsplit_once('/') {
            Some((folder, _)) => (folder.to_owned(), prefix.to_owned()),
            None => (String::new(), prefix.to_owned()),
        };
        if let Some(target) = &self.s3 {
            let this = self.clone();
            return self
                .s3_pages(target, self.s3_prefix(prefix), false, &folder)
                .map_ok(move |page| {
                    let this = this.clone();
                    futures::stream::iter(
                        page.objects
                            .into_iter()
                            .map(move |object| Ok(this.listed_entry(object))),
                    )
                })
                .try_flatten()
                .boxed();
        }
        let list_path = match (self.url.prefix.is_empty(), folder.is_empty()) {
            (true, true) => None,
            _ => match self.path(&folder) {
                Ok(path) => Some(path),
                Err(error) => return futures::stream::once(async move { Err(error) }).boxed(),
            },
        };
        let this = self.clone();
        let links = self.clone();
        let target = self.url.join(&folder);
        self.store
            .list(list_path.as_ref())
            .map_err(move |error| StoreError::from_object_store("list", target.clone(), error))
            .map_ok(move |meta| this.entry(meta))
            .try_filter(move |entry| {
                futures::future::ready(
                    entry.key.starts_with(&filter) && !links.listed_through_link(&entry.key),
                )
            })
            .boxed()
    }

    /// The S3 key prefix of a relative one: the store's prefix joined in front.
    fn s3_prefix(&self, relative: &str) -> String {
        match (self.url.prefix.is_empty(), relative.is_empty()) {
            (true, _) => relative.to_owned(),
            (false, true) => format!("{}/", self.url.prefix),
            (false, false) => format!("{}/{relative}", self.url.prefix),
        }
    }

    /// The ListObjectsV2 pages of keys under `full_prefix` (grouped at `/` when
    /// `delimited`), one request at a time, each asking for `list_page` keys. Failures name
    /// `folder` in this store.
    fn s3_pages(
        &self,
        target: &Arc<S3Target>,
        full_prefix: String,
        delimited: bool,
        folder: &str,
    ) -> BoxStream<'static, Result<super::s3::ListPage, StoreError>> {
        let target = Arc::clone(target);
        let listed_url = self.url.join(folder);
        // The first state is "no token yet"; `None` after the last page ends the stream.
        futures::stream::try_unfold(Some(None::<String>), move |state| {
            let (target, full_prefix, listed_url) =
                (Arc::clone(&target), full_prefix.clone(), listed_url.clone());
            async move {
                let Some(token) = state else {
                    return Ok(None);
                };
                let page = target
                    .list_page(&full_prefix, delimited, token.as_deref())
                    .await
                    .map_err(|failure| failure.into_error("list", listed_url))?;
                let next = page.next.clone().map(Some);
                Ok(Some((page, next)))
            }
        })
        .boxed()
    }

    fn listed_entry(&self, object: super::s3::ListedObject) -> Entry {
        Entry {
            key: self.relative_key(&object.key),
            size: object.size,
            etag: object.etag.map(|etag| etag.trim_matches('"').to_owned()),
            last_modified: object
                .last_modified
                .and_then(|text| text.parse::<jiff::Timestamp>().ok())
                .map(|stamp| stamp.to_string())
                .unwrap_or_default(),
        }
    }

    /// Lists one folder level: the objects directly in `folder` and the sub-folders.
    pub async fn list_folder(&self, folder: &str) -> Result<(Vec<Entry>, Vec<String>), StoreError> {
        let folder = folder.trim_end_matches('/');
        if let Some(target) = &self.s3 {
            let relative = if folder.is_empty() {
                String::new()
            } else {
                format!("{folder}/")
            };
            let mut pages = self.s3_pages(target, self.s3_prefix(&relative), true, folder);
            let (mut entries, mut folders) = (Vec::new(), Vec::new());
            while let Some(page) = pages.try_next().await? {
                entries.extend(page.objects.into_iter().map(|o| self.listed_entry(o)));
                folders.extend(
                    page.prefixes
                        .iter()
                        .map(|prefix| self.relative_key(prefix.trim_end_matches('/'))),
                );
            }
            return Ok((entries, folders));
        }
        let list_path = match (self.url.prefix.is_empty(), folder.is_empty()) {
            (true, true) => None,
            _ => Some(self.path(folder)?),
        };
        let listed = self
            .store
            .list_with_delimiter(list_path.as_ref())
            .await
            .map_err(|error| self.fail("list", folder, error))?;
        let entries = listed
            .objects
            .into_iter()
            .map(|meta| self.entry(meta))
            .filter(|entry| !self.listed_through_link(&entry.key))
            .collect();
        let folders = listed
            .common_prefixes
            .iter()
            .map(|path| self.key_of(path))
            .filter(|folder| !self.listed_through_link(folder))
            .collect();
        Ok((entries, folders))
    }

    /// Metadata of one object; `NotFound` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Entry, StoreError> {
        let path = self.path(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|error| self.fail("head", key, error))?;
        Ok(self.entry(meta))
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(error) if crate::kind::Kinded::kind(&error) == crate::kind::Kind::NotFound => {
                // A missing bucket is an error, not a missing object.
                if error.to_string().contains("bucket does not exist") {
                    Err(error)
                } else {
                    Ok(false)
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The whole content of one object.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|error| self.fail("get", key, error))?;
        result
            .bytes()
            .await
            .map_err(|error| self.fail("get", key, error))
    }

    /// Writes one object in a single request (atomic).
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let options = object_store::PutOptions::from(self.write_attributes());
        self.store
            .put_opts(&path, PutPayload::from_bytes(data), options)
            .await
            .map_err(|error| self.fail("put", key, error))?;
        Ok(())
    }

    /// Copies an object inside this store.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (from_path, to_path) = (self.path(from)?, self.path(to)?);
        self.store
            .copy(&from_path, &to_path)
            .await
            .map_err(|error| self.fail("copy", from, error))
    }

    /// Renames an object inside this store (copy, then delete on most stores).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (from_path, to_path) = (self.path(from)?, self.path(to)?);
        self.store
            .rename(&from_path, &to_path)
            .await
            .map_err(|error| self.fail("rename", from, error))
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.fail("delete", key, error)),
        }
    }
}
