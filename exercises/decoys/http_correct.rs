//! Control: the decoys' file server without a flaw (passes every ex04 stage).
#[path = "http_server_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws::default())
}
