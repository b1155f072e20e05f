//! Control: a polling server that naps 1 ms between rounds; crude, but it passes every ex05 stage.

fn main() -> std::process::ExitCode {
    decoys::epoll::main(decoys::epoll::Flaws::default())
}
