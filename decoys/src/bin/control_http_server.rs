//! Control: the decoys' file server without a flaw (passes every ex04 stage).

fn main() -> std::process::ExitCode {
    decoys::http_server::main(decoys::http_server::Flaws::default())
}
