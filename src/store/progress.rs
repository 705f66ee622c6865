//! Progress of a sync, for people (an indicatif bar on a terminal) or for programs (JSON
//! lines). Both write to stderr; stdout stays for results.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::sync::{SyncObserver, SyncReport};

/// A line sink for JSON events.
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

enum Output {
    Bar(ProgressBar),
    Json {
        sink: LineSink,
        last: Mutex<Instant>,
    },
}

/// Shows sync progress: objects and bytes done out of those found so far, rate and ETA.
pub struct SyncProgress {
    output: Output,
    started: Instant,
    planned_objects: AtomicU64,
    planned_bytes: AtomicU64,
    done_objects: AtomicU64,
    done_bytes: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
}

const JSON_INTERVAL: Duration = Duration::from_millis(500);

impl SyncProgress {
    /// A progress bar on stderr (use only when stderr is a terminal).
    pub fn terminal(label: &str) -> SyncProgress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("the template is valid"),
        );
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        SyncProgress::with(Output::Bar(bar))
    }

    /// JSON progress events, one line each, to `sink`.
    pub fn json(sink: LineSink) -> SyncProgress {
        SyncProgress::with(Output::Json {
            sink,
            last: Mutex::new(Instant::now()),
        })
    }

    fn with(output: Output) -> SyncProgress {
        SyncProgress {
            output,
            started: Instant::now(),
            planned_objects: AtomicU64::new(0),
            planned_bytes: AtomicU64::new(0),
            done_objects: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn event(&self, name: &str) -> serde_json::Value {
        let done_bytes = self.done_bytes.load(Ordering::Relaxed);
        let planned_bytes = self.planned_bytes.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-6);
        let rate = done_bytes as f64 / elapsed;
        let eta = if rate > 0.0 {
            Some((planned_bytes.saturating_sub(done_bytes)) as f64 / rate)
        } else {
            None
        };
        serde_json::json!({
            "event": name,
            "objects_done": self.done_objects.load(Ordering::Relaxed),
            "objects_total": self.planned_objects.load(Ordering::Relaxed),
            "skipped": self.skipped.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "bytes_done": done_bytes,
            "bytes_total": planned_bytes,
            "bytes_per_second": rate.round(),
            "eta_seconds": eta.map(|seconds| (seconds * 10.0).round() / 10.0),
            "elapsed_seconds": (elapsed * 10.0).round() / 10.0,
        })
    }

    fn update(&self) {
        match &self.output {
            Output::Bar(bar) => {
                bar.set_length(self.planned_bytes.load(Ordering::Relaxed));
                bar.set_position(self.done_bytes.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{}/{} objects, {} skipped, {} failed",
                    self.done_objects.load(Ordering::Relaxed),
                    self.planned_objects.load(Ordering::Relaxed),
                    self.skipped.load(Ordering::Relaxed),
                    self.failed.load(Ordering::Relaxed)
                ));
            }
            Output::Json { sink, last } => {
                let mut last = last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if last.elapsed() >= JSON_INTERVAL {
                    *last = Instant::now();
                    sink(&self.event("store.sync.progress").to_string());
                }
            }
        }
    }
}

impl SyncObserver for SyncProgress {
    fn planned(&self, objects: u64, bytes: u64) {
        self.planned_objects.fetch_add(objects, Ordering::Relaxed);
        self.planned_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.update();
    }

    fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.update();
    }

    fn copied(&self, bytes: u64) {
        self.done_objects.fetch_add(1, Ordering::Relaxed);
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.update();
    }

    fn failed(&self, key: &str, reason: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        match &self.output {
            Output::Bar(bar) => bar.println(format!("failed: {key}: {reason}")),
            Output::Json { sink, .. } => sink(
                &serde_json::json!({ "event": "store.sync.failed", "key": key, "reason": reason })
                    .to_string(),
            ),
        }
        self.update();
    }

    fn finished(&self, report: &SyncReport) {
        match &self.output {
            Output::Bar(bar) => bar.finish_and_clear(),
            Output::Json { sink, .. } => {
                let mut event = self.event("store.sync.done");
                event["copied"] = report.copied.into();
                event["deleted"] = report.deleted.into();
                event["retries"] = report.retries.into();
                sink(&event.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_progress_reports_failures_and_a_final_event() {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let captured = Arc::clone(&lines);
        let progress = SyncProgress::json(Arc::new(move |line: &str| {
            captured.lock().expect("lock").push(line.to_owned());
        }));
        progress.planned(2, 10);
        progress.copied(4);
        progress.failed("a b", "boom");
        progress.finished(&SyncReport::default());
        let lines = lines.lock().expect("lock");
        let failed: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(failed["event"], "store.sync.failed");
        assert_eq!(failed["key"], "a b");
        let done: serde_json::Value =
            serde_json::from_str(lines.last().expect("line")).expect("json");
        assert_eq!(done["event"], "store.sync.done");
        assert_eq!(done["objects_total"], 2);
        assert_eq!(done["bytes_done"], 4);
    }
}
