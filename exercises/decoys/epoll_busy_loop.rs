//! Decoy: a polling server that never sleeps (rejected by ex05 idle_without_spinning).
#[path = "epoll_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        busy_loop: true,
        ..Default::default()
    })
}
