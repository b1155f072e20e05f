//! Decoy: a file server with the flaw `naive_paths` (rejected by ex04 refuses_traversal and refuses_symlink_out).
#[path = "http_server_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        naive_paths: true,
        ..Default::default()
    })
}
