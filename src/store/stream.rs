//! Streaming sinks and sources for backups: write an object while producing it (multipart,
//! bounded memory, visible only once `finish` completes it, aborted otherwise) and read one
//! as a byte stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::bucket::Bucket;
use super::error::StoreError;
use super::location::StoreOptions;

/// Bytes buffered before a multipart upload starts, and the part size after that.
pub const WRITER_PART_SIZE: usize = 16 << 20;
/// Parts uploaded at the same time by one writer; memory is bounded by parts × part size.
pub const WRITER_PARTS_IN_FLIGHT: usize = 4;

/// Writes one object. Small objects are put in one request at `finish`; larger ones are
/// uploaded in parts as they are written and completed at `finish`. Dropped without
/// `finish` (an error, a panic, Ctrl-C), the upload is aborted and no object appears.
pub struct ObjectWriter {
    inner: Option<BufWriter>,
    url: String,
    written: u64,
}

/// Opens a writer for the object named by `url` (`s3://bucket/path/to/backup.dump`).
pub fn open_writer(url: &str, options: &StoreOptions) -> Result<ObjectWriter, StoreError> {
    let mut options = options.clone();
    options
        .entry("create".to_owned())
        .or_insert_with(|| "false".to_owned());
    let (bucket, path) = object_at(url, &options)?;
    let writer = BufWriter::with_capacity(bucket.object_store().clone(), path, WRITER_PART_SIZE)
        .with_max_concurrency(WRITER_PARTS_IN_FLIGHT)
        .with_attributes(bucket.write_attributes());
    Ok(ObjectWriter {
        inner: Some(writer),
        url: bucket.url().to_string(),
        written: 0,
    })
}

/// The bucket of an object URL and the object's path in it.
fn object_at(url: &str, options: &StoreOptions) -> Result<(Bucket, Path), StoreError> {
    let bucket = if url.starts_with("file://") {
        // For files the directory is the store and the file name the key.
        let (directory, name) = url.rsplit_once('/').unwrap_or((url, ""));
        let directory = if directory == "file://" {
            "file:///"
        } else {
            directory
        };
        let mut options = options.clone();
        options.remove("create");
        let bucket = Bucket::open(directory, &options)?;
        let path = bucket.path(name)?;
        return Ok((bucket, path));
    } else {
        let mut options = options.clone();
        options.remove("create");
        Bucket::open(url, &options)?
    };
    if bucket.url().prefix.is_empty() {
        return Err(StoreError::BadUrl {
            url: bucket.url().to_string(),
            reason: "names a bucket, not an object: add the object's key".to_owned(),
        });
    }
    let path = bucket.path("")?;
    Ok((bucket, path))
}

impl ObjectWriter {
    /// The object's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn inner(&mut self) -> Result<&mut BufWriter, StoreError> {
        self.inner.as_mut().ok_or_else(|| {
            StoreError::Refused(
                format!("write {}: the writer is closed", self.url),
                crate::kind::Kind::Failed,
            )
        })
    }

    /// Appends `data`; waits while too many parts are in flight.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let url = self.url.clone();
        self.inner()?
            .write_all(data)
            .await
            .map_err(|source| StoreError::Io {
                action: "upload",
                target: url,
                source,
            })?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Completes the object. Until this returns `Ok`, no object exists at the URL.
    pub async fn finish(mut self) -> Result<u64, StoreError> {
        let url = self.url.clone();
        let mut inner = self.inner.take().ok_or_else(|| {
            StoreError::Refused(
                format!("complete {url}: the writer is closed"),
                crate::kind::Kind::Failed,
            )
        })?;
        // A failed shutdown has aborted a multipart upload already; `abort` after it would
        // panic ("Already shut down").
        if let Err(source) = inner.shutdown().await {
            return Err(StoreError::Io {
                action: "complete upload of",
                target: url,
                source,
            });
        }
        Ok(self.written)
    }

    /// Gives up: aborts the upload so no object (and no stored part) remains.
    pub async fn abort(mut self) -> Result<(), StoreError> {
        if let Some(mut inner) = self.inner.take() {
            inner.abort().await.map_err(|error| {
                StoreError::from_object_store("abort upload of", self.url.clone(), error)
            })?;
        }
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Never completed: abort in the background so stored parts are released.
            runtime.spawn(async move {
                let _ = inner.abort().await;
            });
        }
    }
}

/// Writing through `AsyncWrite` never completes the object: `poll_shutdown` only flushes.
/// Call [`ObjectWriter::finish`] to complete it.
impl AsyncWrite for ObjectWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(std::io::Error::other("the writer is closed")));
        };
        let polled = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(count)) = &polled {
            this.written += *count as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Deletes the object named by `url` (a dump whose manifest could not be written).
pub async fn delete_object(url: &str, options: &StoreOptions) -> Result<(), StoreError> {
    let (bucket, path) = object_at(url, options)?;
    bucket
        .object_store()
        .delete(&path)
        .await
        .map_err(|error| StoreError::from_object_store("delete", bucket.url().to_string(), error))
}

/// Reads one object as a byte stream.
pub struct ObjectReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    size: u64,
    url: String,
}

/// Opens the object named by `url` for reading; fails with `NotFound` if it does not exist.
pub async fn open_reader(url: &str, options: &StoreOptions) -> Result<ObjectReader, StoreError> {
    let (bucket, path) = object_at(url, options)?;
    let target = bucket.url().to_string();
    let result = bucket
        .object_store()
        .get(&path)
        .await
        .map_err(|error| StoreError::from_object_store("get", target.clone(), error))?;
    let size = result.meta.size;
    let stream = result
        .into_stream()
        .map_err(|error| std::io::Error::other(crate::kind::chain_text(&error)))
        .boxed();
    Ok(ObjectReader {
        inner: Box::pin(tokio_util::io::StreamReader::new(stream)),
        size,
        url: target,
    })
}

impl ObjectReader {
    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The object's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}
