//! Decoy: a CGI server that passes local redirects to the client (rejected by ex03 local_redirect_followed and redirect_loop_stopped).
#[path = "cgi_base.rs"]
mod base;

fn main() -> std::process::ExitCode {
    base::main(base::Flaws {
        no_local_redirects: true,
        ..Default::default()
    })
}
