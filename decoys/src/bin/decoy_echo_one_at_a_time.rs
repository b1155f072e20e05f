//! Decoy: a correct iterative echo server, where serving clients at once is required (rejected by demo_concurrency serves_while_busy).

fn main() -> std::process::ExitCode {
    decoys::echo::main(decoys::echo::Flaws {
        ..Default::default()
    })
}
