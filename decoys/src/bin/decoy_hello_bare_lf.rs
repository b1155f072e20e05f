//! Decoy: a hello server whose head lines end in a bare LF (rejected by ex02 status_line_crlf).

fn main() -> std::process::ExitCode {
    decoys::hello::main(decoys::hello::Flaws {
        bare_lf: true,
        ..Default::default()
    })
}
