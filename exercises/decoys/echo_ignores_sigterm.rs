//! Decoy: an echo server that swallows SIGTERM (rejected by ex01 sigterm_exits_0).
#[path = "echo_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        ignores_sigterm: true,
        ..Default::default()
    })
}
