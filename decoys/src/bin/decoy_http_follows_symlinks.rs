//! Decoy: a file server with the flaw `follows_symlinks` (rejected by ex04 refuses_symlink_out).

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws {
        follows_symlinks: true,
        ..Default::default()
    })
}
