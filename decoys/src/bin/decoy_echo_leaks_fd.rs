//! Decoy: an echo server that never closes an accepted socket (rejected by ex01 no_fd_leak).

fn main() -> std::process::ExitCode {
    decoys::echo::main(decoys::echo::Flaws {
        leaks_fd: true,
        ..Default::default()
    })
}
