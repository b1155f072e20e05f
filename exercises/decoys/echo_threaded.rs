//! Control: a correct echo server with a thread per connection (passes ex01 and demo_concurrency).
#[path = "echo_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        threaded: true,
        ..Default::default()
    })
}
