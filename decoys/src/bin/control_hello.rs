//! Control: a correct hello server (passes every ex02 stage).

fn main() -> std::process::ExitCode {
    decoys::hello::main(decoys::hello::Flaws {
        ..Default::default()
    })
}
