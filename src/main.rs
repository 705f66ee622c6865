//! The `ankus` binary: parse the command line, run, exit with the documented code.

fn main() -> std::process::ExitCode {
    let code = ankus::cli::run(std::env::args_os());
    std::process::ExitCode::from(code)
}
