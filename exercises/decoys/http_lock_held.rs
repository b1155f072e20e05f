//! Decoy: a file server with the flaw `lock_held` (rejected by ex04 serves_while_busy).
#[path = "http_server_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        lock_held: true,
        ..Default::default()
    })
}
