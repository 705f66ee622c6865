//! The `ankus` binary: parse the command line, run, exit with the documented code.

/// Backups stream records of up to 10 MiB through several threads (reader, encoder, HTTP/2).
/// glibc's allocator keeps such freed buffers resident per thread arena (measured on a 1 GiB
/// restore: 74 MiB of live heap at peak, 215 MiB resident); mimalloc returns them, so the
/// resident size follows what is really in use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let code = ankus::cli::run(std::env::args_os());
    std::process::ExitCode::from(code)
}
