//! The async seam: the only module that owns the tokio runtime and blocks on it.
//!
//! Scripts run on plain threads; bindings hand their futures to [`block_on`], which races them
//! against the run's cancellation token and an optional deadline.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio_util::sync::CancellationToken;

/// Stack size for threads that run scripts (the script itself, its deferred cleanups, each
/// branch of `parallel`): Rhai recursion is deep in debug builds.
pub const SCRIPT_STACK: usize = 64 << 20;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Why a blocking call returned without the future's output.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Interrupted {
    /// The run was cancelled (Ctrl-C).
    #[error("interrupted")]
    Cancelled,
    /// The deadline passed first.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Picks rustls' crypto backend for the process. Both backends end up in the dependency graph
/// (object_store pulls aws-lc-rs, kube and tonic use ring), so rustls cannot choose by itself.
pub fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process-wide runtime, created on first use.
pub fn handle() -> Handle {
    RUNTIME
        .get_or_init(|| {
            install_crypto_provider();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_name("ankus-io")
                .enable_all()
                .build()
                .expect("the tokio runtime can always be built on this platform")
        })
        .handle()
        .clone()
}

/// Runs `fut` to completion on the runtime from a non-async thread, unless `cancel` fires or
/// `timeout` passes first.
pub fn block_on<F: Future>(
    cancel: &CancellationToken,
    timeout: Option<Duration>,
    fut: F,
) -> Result<F::Output, Interrupted> {
    let cancel = cancel.clone();
    handle().block_on(async move {
        let deadline = async {
            match timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Interrupted::Cancelled),
            out = fut => Ok(out),
            _ = deadline => Err(Interrupted::Timeout(timeout.unwrap_or_default())),
        }
    })
}

/// Runs `fut` on the runtime without cancellation, for setup and teardown that must finish.
pub fn block_on_uncancellable<F: Future>(fut: F) -> F::Output {
    handle().block_on(fut)
}

/// A blocking `Read` over an object opened asynchronously, for code that reads dumps on plain
/// threads (never on a runtime thread: that is refused rather than deadlocking).
pub fn open_blocking_reader<R, E, F>(open: F) -> std::io::Result<Box<dyn std::io::Read + Send>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    E: std::fmt::Display,
    F: Future<Output = Result<R, E>>,
{
    if Handle::try_current().is_ok() {
        return Err(std::io::Error::other(
            "object-store sources are read from a plain thread, not from async code",
        ));
    }
    let reader = handle()
        .block_on(open)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
        reader,
        handle(),
    )))
}

/// Spawns a background task on the runtime (servers, signal handlers).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_token_interrupts_a_pending_future() {
        let token = CancellationToken::new();
        token.cancel();
        let out = block_on(&token, None, std::future::pending::<()>());
        assert_eq!(out, Err(Interrupted::Cancelled));
    }

    #[test]
    fn deadline_interrupts_a_slow_future() {
        let token = CancellationToken::new();
        let out = block_on(
            &token,
            Some(Duration::from_millis(20)),
            std::future::pending::<()>(),
        );
        assert_eq!(out, Err(Interrupted::Timeout(Duration::from_millis(20))));
    }

    #[test]
    fn ready_future_returns_its_output() {
        let token = CancellationToken::new();
        assert_eq!(block_on(&token, None, async { 7 }), Ok(7));
    }
}
