//! Decoy: an echo server that echoes what one read returned, then closes (rejected by ex01 echo_large).

fn main() -> std::process::ExitCode {
    decoys::echo::main(decoys::echo::Flaws {
        reads_once: true,
        ..Default::default()
    })
}
