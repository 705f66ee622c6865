//! Store URLs (`s3://bucket/prefix`, `gs://`, `az://`, `wasb://`, `as://`, `file://`,
//! `memory://`) and the options that go with them. Parsing keeps the prefix raw, as the AWS
//! tools do: `s3://b/100% done/` names the key prefix `100% done/`.

use std::collections::BTreeMap;
use std::fmt;

use super::error::StoreError;

/// The kind of store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// A local directory.
    File,
    /// A process-wide in-memory store, by name.
    Memory,
}

impl Scheme {
    /// The canonical scheme name in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::File => "file",
            Scheme::Memory => "memory",
        }
    }
}

/// A parsed store URL: where the bucket is and which key prefix inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreUrl {
    /// The kind of store.
    pub scheme: Scheme,
    /// The bucket, container, memory-store name, or (for `file://`) the directory path.
    pub bucket: String,
    /// The Azure storage account, when the URL names one (`wasb://c@account.blob...`).
    pub account: Option<String>,
    /// The key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
}

impl StoreUrl {
    /// Parses `text`. User-info (`user:secret@`) is refused for every scheme but the Azure
    /// `container@account` form, and never echoed back.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: redact(text),
            reason: reason.to_owned(),
        };
        let (scheme_text, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("expected SCHEME://BUCKET[/PREFIX], e.g. s3://my-bucket/backups"))?;
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gcs,
            "az" | "azure" | "wasb" | "wasbs" | "as" | "abfs" | "abfss" => Scheme::Azure,
            "file" => Scheme::File,
            "memory" | "mem" => Scheme::Memory,
            "" => return Err(bad("the scheme is empty")),
            other => {
                return Err(StoreError::UnknownScheme {
                    url: redact(text),
                    scheme: other.to_owned(),
                });
            }
        };
        if scheme == Scheme::File {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(bad("file URLs need an absolute path: file:///path/to/dir"));
            }
            let trimmed = path.trim_end_matches('/');
            return Ok(StoreUrl {
                scheme,
                bucket: if trimmed.is_empty() {
                    "/".to_owned()
                } else {
                    trimmed.to_owned()
                },
                account: None,
                prefix: String::new(),
            });
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (bucket, account) = match authority.split_once('@') {
            Some((container, host)) if scheme == Scheme::Azure => {
                let account = host.split('.').next().unwrap_or_default();
                if account.is_empty() || container.contains(':') {
                    return Err(bad("expected CONTAINER@ACCOUNT.blob.core.windows.net"));
                }
                (container.to_owned(), Some(account.to_owned()))
            }
            Some(_) => {
                return Err(bad(
                    "credentials in URLs are not accepted; use the environment or the options map",
                ));
            }
            None => (authority.to_owned(), None),
        };
        if bucket.is_empty() {
            return Err(bad("the bucket name is empty"));
        }
        if scheme != Scheme::Memory
            && !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(bad(
                "bucket names use letters, digits, '-', '.' and '_' only",
            ));
        }
        let prefix = path.trim_matches('/').to_owned();
        if prefix.split('/').any(|part| part == "." || part == "..")
            || (!prefix.is_empty() && prefix.split('/').any(str::is_empty))
        {
            return Err(bad("the prefix has an empty, '.' or '..' segment"));
        }
        Ok(StoreUrl {
            scheme,
            bucket,
            account,
            prefix,
        })
    }

    /// The URL of `key` below this URL's prefix.
    pub fn join(&self, key: &str) -> String {
        let base = self.to_string();
        let base = base.trim_end_matches('/');
        if key.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{key}")
        }
    }

    /// Whether one URL's objects include the other's (same bucket, one prefix inside the
    /// other).
    pub fn overlaps(&self, other: &StoreUrl) -> bool {
        if self.scheme != other.scheme
            || self.bucket != other.bucket
            || self.account != other.account
        {
            return false;
        }
        let inside = |outer: &str, inner: &str| {
            outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}/"))
        };
        inside(&self.prefix, &other.prefix) || inside(&other.prefix, &self.prefix)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::File => write!(f, "file://{}", self.bucket),
            _ => {
                write!(f, "{}://{}", self.scheme.as_str(), self.bucket)?;
                if let Some(account) = &self.account {
                    write!(f, "@{account}")?;
                }
                if self.prefix.is_empty() {
                    Ok(())
                } else {
                    write!(f, "/{}", self.prefix)
                }
            }
        }
    }
}

/// Removes user-info from a URL-looking text so errors never echo a secret.
pub fn redact(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest
                .split_once('/')
                .map_or((rest, None), |(a, p)| (a, Some(p)));
            let host = match authority.rsplit_once('@') {
                Some((user_info, host)) if user_info.contains(':') => format!("***@{host}"),
                _ => authority.to_owned(),
            };
            match path {
                Some(path) => format!("{scheme}://{host}/{path}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => text.to_owned(),
    }
}

/// Options for opening a store, as strings (`endpoint`, `region`, `access_key_id`, ...).
pub type StoreOptions = BTreeMap<String, String>;

/// Parses a boolean option value.
pub(crate) fn option_bool(url: &StoreUrl, key: &str, value: &str) -> Result<bool, StoreError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(StoreError::BadOption {
            url: url.to_string(),
            key: key.to_owned(),
            reason: format!("must be true or false, not '{value}'"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_keep_the_raw_prefix() {
        let url = StoreUrl::parse("s3://my-bucket/100% done/a+b/").expect("parses");
        assert_eq!(url.scheme, Scheme::S3);
        assert_eq!(url.bucket, "my-bucket");
        assert_eq!(url.prefix, "100% done/a+b");
        assert_eq!(url.to_string(), "s3://my-bucket/100% done/a+b");
        assert_eq!(url.join("k"), "s3://my-bucket/100% done/a+b/k");
    }

    #[test]
    fn user_info_is_refused_and_never_echoed() {
        let error = StoreUrl::parse("s3://AKIA:topsecret@bucket/x").expect_err("refused");
        let text = error.to_string();
        assert!(text.contains("credentials in URLs"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn unknown_schemes_and_malformed_urls_are_named() {
        let error = StoreUrl::parse("ftp://host/x").expect_err("unknown");
        assert!(error.to_string().contains("unknown scheme 'ftp'"));
        assert!(StoreUrl::parse("bucket-without-scheme").is_err());
        assert!(StoreUrl::parse("s3:///key").is_err());
        assert!(StoreUrl::parse("s3://b/a//c").is_err());
        assert!(StoreUrl::parse("file://relative/path").is_err());
    }

    #[test]
    fn azure_container_at_account_form() {
        let url = StoreUrl::parse("wasb://data@acct.blob.core.windows.net/p").expect("parses");
        assert_eq!(url.scheme, Scheme::Azure);
        assert_eq!(url.bucket, "data");
        assert_eq!(url.account.as_deref(), Some("acct"));
        assert_eq!(url.prefix, "p");
    }

    #[test]
    fn overlap_detects_nested_prefixes_in_one_bucket() {
        let outer = StoreUrl::parse("s3://b/data").expect("parses");
        let inner = StoreUrl::parse("s3://b/data/copy").expect("parses");
        let sibling = StoreUrl::parse("s3://b/data2").expect("parses");
        let other = StoreUrl::parse("s3://c/data").expect("parses");
        assert!(outer.overlaps(&inner));
        assert!(inner.overlaps(&outer));
        assert!(!outer.overlaps(&sibling));
        assert!(!outer.overlaps(&other));
    }
}
