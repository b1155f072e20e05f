//! Decoy: an echo server that never closes an accepted socket (rejected by ex01 no_fd_leak).
#[path = "echo_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        leaks_fd: true,
        ..Default::default()
    })
}
