//! Decoy: a file server with the flaw `no_timeout` (rejected by ex04 silent_client_timeout).

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws {
        no_timeout: true,
        ..Default::default()
    })
}
