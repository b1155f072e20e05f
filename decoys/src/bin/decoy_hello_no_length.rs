//! Decoy: a hello server that leaves out Content-Length (rejected by ex02 content_length_exact).

fn main() -> std::process::ExitCode {
    decoys::hello::main(decoys::hello::Flaws {
        no_length: true,
        ..Default::default()
    })
}
