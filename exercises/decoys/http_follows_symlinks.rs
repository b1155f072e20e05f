//! Decoy: a file server with the flaw `follows_symlinks` (rejected by ex04 refuses_symlink_out).
#[path = "http_server_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        follows_symlinks: true,
        ..Default::default()
    })
}
