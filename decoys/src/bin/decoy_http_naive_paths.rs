//! Decoy: a file server with the flaw `naive_paths` (rejected by ex04 refuses_traversal and refuses_symlink_out).

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws {
        naive_paths: true,
        ..Default::default()
    })
}
