//! Decoy: a CGI server whose Gateway swaps the client's and its own address (rejected by ex03 connection_variables).
#[path = "cgi_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        swapped_addresses: true,
        ..Default::default()
    })
}
