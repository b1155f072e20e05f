//! Decoy: an echo server that swallows SIGTERM (rejected by ex01 sigterm_exits_0).

fn main() -> std::process::ExitCode {
    decoys::echo::main(decoys::echo::Flaws {
        ignores_sigterm: true,
        ..Default::default()
    })
}
