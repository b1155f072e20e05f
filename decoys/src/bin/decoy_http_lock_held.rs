//! Decoy: a file server with the flaw `lock_held` (rejected by ex04 serves_while_busy).

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws {
        lock_held: true,
        ..Default::default()
    })
}
