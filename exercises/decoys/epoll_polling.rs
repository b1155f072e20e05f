//! Control: a polling server that naps 1 ms between rounds; crude, but it passes every ex05 stage.
#[path = "epoll_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws::default())
}
