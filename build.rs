//! Build script: embeds `scripts/` and `stdlib/` into the binary and compiles `proto/` with
//! protox and tonic (no protoc needed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    embed_rhai(&out_dir);
    compile_protos(&out_dir);
}

/// Writes `embedded.rs`: two sorted tables of (name, source) for scripts and stdlib modules.
fn embed_rhai(out_dir: &Path) {
    let mut code = String::new();
    for (table, dir) in [("SCRIPTS", "scripts"), ("STDLIB", "stdlib")] {
        println!("cargo:rerun-if-changed={dir}");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".rhai"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        writeln!(code, "/// Embedded `{dir}/*.rhai`, sorted by name.").expect("string write");
        writeln!(code, "pub static {table}: &[(&str, &str)] = &[").expect("string write");
        for name in names {
            let stem = name.trim_end_matches(".rhai");
            let path = std::fs::canonicalize(Path::new(dir).join(&name)).expect("listed file");
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                code,
                "    ({stem:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .expect("string write");
        }
        writeln!(code, "];").expect("string write");
    }
    std::fs::write(out_dir.join("embedded.rs"), code).expect("write embedded.rs");
}

/// Compiles every `.proto` under `proto/` into Rust (prost + tonic) and a descriptor set.
fn compile_protos(out_dir: &Path) {
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    collect_protos(Path::new("proto"), &mut files);
    files.sort();
    if files.is_empty() {
        std::fs::write(out_dir.join("ankus_descriptor.bin"), []).expect("write descriptor");
        std::fs::write(out_dir.join("protos.rs"), "").expect("write protos.rs");
        return;
    }
    let descriptors = protox::compile(&files, ["proto"]).expect("proto/ compiles");
    let bytes = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("ankus_descriptor.bin"), &bytes).expect("write descriptor");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)
        .expect("generate Rust from proto/");
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_protos(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
}
