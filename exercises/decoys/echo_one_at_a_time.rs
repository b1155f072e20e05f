//! Decoy: a correct iterative echo server, where serving clients at once is required (rejected by demo_concurrency serves_while_busy).
#[path = "echo_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        ..Default::default()
    })
}
