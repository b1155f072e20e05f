//! Decoy: a hello server whose head lines end in a bare LF (rejected by ex02 status_line_crlf).
#[path = "hello_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        bare_lf: true,
        ..Default::default()
    })
}
