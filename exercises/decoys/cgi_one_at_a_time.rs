//! Decoy: a CGI server that serves one connection at a time (rejected by ex03 two_clients_at_once).
#[path = "cgi_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        one_at_a_time: true,
        ..Default::default()
    })
}
