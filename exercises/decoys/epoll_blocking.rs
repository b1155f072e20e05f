//! Decoy: blocking sockets, one connection at a time (rejected by ex05 slow_reader and many_clients).
#[path = "epoll_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        blocking: true,
        ..Default::default()
    })
}
