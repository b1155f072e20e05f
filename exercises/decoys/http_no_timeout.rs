//! Decoy: a file server with the flaw `no_timeout` (rejected by ex04 silent_client_timeout).
#[path = "http_server_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        no_timeout: true,
        ..Default::default()
    })
}
