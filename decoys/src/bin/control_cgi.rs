//! Control: the ex03 decoys' base with no flaw, which must pass every stage.

fn main() -> std::process::ExitCode {
    decoys::cgi::main(decoys::cgi::Flaws::default())
}
