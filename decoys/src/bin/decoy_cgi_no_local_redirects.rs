//! Decoy: a CGI server that passes local redirects to the client (rejected by ex03 local_redirect_followed and redirect_loop_stopped).

fn main() -> std::process::ExitCode {
    decoys::cgi::main(decoys::cgi::Flaws {
        no_local_redirects: true,
        ..Default::default()
    })
}
