//! Control: the ex03 decoys' base with no flaw, which must pass every stage.
#[path = "cgi_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws::default())
}
