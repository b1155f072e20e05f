//! Decoy: a CGI server that serves one connection at a time (rejected by ex03 two_clients_at_once).

fn main() -> std::process::ExitCode {
    decoys::cgi::main(decoys::cgi::Flaws {
        one_at_a_time: true,
        ..Default::default()
    })
}
