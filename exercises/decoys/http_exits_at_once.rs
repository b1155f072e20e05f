//! Decoy: a file server with the flaw `exits_at_once` (rejected by ex04 graceful_shutdown).
#[path = "http_server_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        exits_at_once: true,
        ..Default::default()
    })
}
