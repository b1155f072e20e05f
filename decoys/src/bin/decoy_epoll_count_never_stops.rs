//! Decoy: a /count whose producer goes on after its client left (rejected by ex05 count_stops).

fn main() -> std::process::ExitCode {
    decoys::epoll::main(decoys::epoll::Flaws {
        count_never_stops: true,
        ..Default::default()
    })
}
