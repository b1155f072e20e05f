//! Decoy: a /count whose producer goes on after its client left (rejected by ex05 count_stops).
#[path = "epoll_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        count_never_stops: true,
        ..Default::default()
    })
}
