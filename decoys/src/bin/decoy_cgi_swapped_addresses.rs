//! Decoy: a CGI server whose Gateway swaps the client's and its own address (rejected by ex03 connection_variables).

fn main() -> std::process::ExitCode {
    decoys::cgi::main(decoys::cgi::Flaws {
        swapped_addresses: true,
        ..Default::default()
    })
}
