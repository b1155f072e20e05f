//! Decoy: an echo server that echoes what one read returned, then closes (rejected by ex01 echo_large).
#[path = "echo_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        reads_once: true,
        ..Default::default()
    })
}
