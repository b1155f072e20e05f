//! Control: a correct hello server (passes every ex02 stage).
#[path = "hello_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        ..Default::default()
    })
}
