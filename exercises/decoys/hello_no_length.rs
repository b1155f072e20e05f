//! Decoy: a hello server that leaves out Content-Length (rejected by ex02 content_length_exact).
#[path = "hello_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        no_length: true,
        ..Default::default()
    })
}
