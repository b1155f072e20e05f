//! Decoy: a file server that serves one client at a time (the lock held
//! while serving) and drops any client after one second, whatever
//! `--timeout` says. It serves the others only after dropping the first:
//! rejected by ex04 serves_while_busy, which checks that the first client
//! is still waiting once the others are answered.

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws {
        lock_held: true,
        one_second_timeout: true,
        ..Default::default()
    })
}
