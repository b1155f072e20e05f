//! Decoy: blocking sockets, one connection at a time (rejected by ex05 slow_reader and many_clients).

fn main() -> std::process::ExitCode {
    decoys::epoll::main(decoys::epoll::Flaws {
        blocking: true,
        ..Default::default()
    })
}
