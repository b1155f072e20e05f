//! Decoy: a polling server that never sleeps (rejected by ex05 idle_without_spinning).

fn main() -> std::process::ExitCode {
    decoys::epoll::main(decoys::epoll::Flaws {
        busy_loop: true,
        ..Default::default()
    })
}
