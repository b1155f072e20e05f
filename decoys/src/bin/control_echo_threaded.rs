//! Control: a correct echo server with a thread per connection (passes ex01 and demo_concurrency).

fn main() -> std::process::ExitCode {
    decoys::echo::main(decoys::echo::Flaws {
        threaded: true,
        ..Default::default()
    })
}
