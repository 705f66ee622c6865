//! The tracing events of ankus and the libraries it uses, on stderr: ankus's own warnings by
//! default (none with `-q`), `-v` its debug events, `-vv` adds the Kubernetes, gRPC and HTTP clients', `-vvv` everything;
//! `RUST_LOG` (an `EnvFilter` directive such as `ankus=debug,kube=trace`) wins over both.
//! Every line is masked like the console's.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

/// The filter for `-v` repeated `verbose` times (or `-q`), when `RUST_LOG` is not set.
fn directives(verbose: u8, quiet: bool) -> Option<&'static str> {
    match verbose {
        _ if quiet => None,
        0 => Some("ankus=warn"),
        1 => Some("ankus=debug"),
        2 => Some(
            "ankus=trace,kube=debug,kube_client=debug,tonic=debug,tower=debug,hyper_util=debug,object_store=debug",
        ),
        _ => Some("trace"),
    }
}

/// Installs the subscriber (once per process; later calls do nothing). An invalid `RUST_LOG`
/// is reported and ignored.
pub fn install(verbose: u8, quiet: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty());
    let filter = match from_env {
        Some(spec) => match EnvFilter::try_new(&spec) {
            Ok(filter) => filter,
            Err(error) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: RUST_LOG={spec:?} is not a valid filter ({error}); ignored"
                );
                match directives(verbose, quiet) {
                    Some(directives) => EnvFilter::new(directives),
                    None => return,
                }
            }
        },
        None => match directives(verbose, quiet) {
            Some(directives) => EnvFilter::new(directives),
            None => return,
        },
    };
    let colour = crate::host::render::colour_wanted(std::io::stderr().is_terminal());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(|| Masked(std::io::stderr()))
        .try_init();
}

/// Stderr with the process's secrets masked in what is written.
struct Masked(std::io::Stderr);

impl Write for Masked {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        self.0.write_all(crate::redact::redact(&text).as_bytes())?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_widens_the_filter_and_quiet_installs_nothing() {
        assert_eq!(directives(0, true), None);
        assert_eq!(directives(0, false), Some("ankus=warn"));
        assert_eq!(directives(1, false), Some("ankus=debug"));
        assert!(directives(2, false).is_some_and(|d| d.contains("kube=debug")));
        assert_eq!(directives(3, false), Some("trace"));
        for verbose in 0..=3 {
            EnvFilter::try_new(directives(verbose, false).expect("some")).expect("valid");
        }
    }
}
