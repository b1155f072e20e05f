//! Decoy: a file server with the flaw `exits_at_once` (rejected by ex04 graceful_shutdown).

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws {
        exits_at_once: true,
        ..Default::default()
    })
}
