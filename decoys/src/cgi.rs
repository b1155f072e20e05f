//! A small CGI server on `ladder::cgi` for the ex03 decoys: correct unless a
//! flaw is switched on. One request per connection; enough for the grader,
//! which always closes after one answer.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ladder::cgi::{self, Gateway, Outcome};
use ladder::http::{
    self, Body, BodyDecoder, Limits, Parsed, Rejection, Request, Response, ServerInfo,
};

/// The mistakes a decoy makes; each one is what a grader stage must catch.
#[derive(Default)]
pub struct Flaws {
    /// Serve connections in the accept loop itself, one after another.
    pub one_at_a_time: bool,
    /// Build the Gateway with the two addresses the wrong way round.
    pub swapped_addresses: bool,
    /// Pass a local redirect on to the client instead of serving it.
    pub no_local_redirects: bool,
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<3>,
    #[arg(long)]
    cgi_dir: PathBuf,
    #[arg(long, short = 'd', default_value = ".")]
    directory: PathBuf,
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn main(flaws: Flaws) -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    let shutdown = ladder::shutdown::on_termination(|_| {
        cgi::kill_running_scripts();
        std::process::exit(0);
    });
    match shutdown.and_then(|()| run(args, flaws)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("decoy: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, flaws: Flaws) -> io::Result<()> {
    let cgi_dir = args.cgi_dir.canonicalize()?;
    let root = args.directory.canonicalize()?;
    let timeout = Duration::from_secs(args.timeout);
    let listener = TcpListener::bind(args.listen.addr())?;
    ladder::cli::announce("http", listener.local_addr()?)?;
    let flaws = std::sync::Arc::new(flaws);
    for stream in listener.incoming().flatten() {
        let one_at_a_time = flaws.one_at_a_time;
        let (cgi_dir, root, flaws) = (cgi_dir.clone(), root.clone(), flaws.clone());
        let serve = move || {
            let _ = serve(stream, &cgi_dir, &root, timeout, &flaws);
        };
        if one_at_a_time {
            serve();
        } else {
            std::thread::spawn(serve);
        }
    }
    Ok(())
}

fn serve(
    mut stream: TcpStream,
    cgi_dir: &Path,
    root: &Path,
    timeout: Duration,
    flaws: &Flaws,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (peer, local) = (stream.peer_addr()?, stream.local_addr()?);
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (mut request, consumed) = loop {
        match http::parse_request(&buf, &limits) {
            Ok(Parsed::Complete { request, consumed }) => break (request, consumed),
            Ok(Parsed::Partial) => {}
            Err(rejection) => return send(&mut stream, rejection.to_response()),
        }
        match stream.read(&mut chunk)? {
            0 => return Ok(()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    buf.drain(..consumed);
    let framing = match request.body_framing(&limits) {
        Ok(framing) => framing,
        Err(rejection) => return send(&mut stream, rejection.to_response()),
    };
    let mut decoder = BodyDecoder::new(framing, &limits);
    let mut body = Vec::new();
    while !decoder.is_done() {
        match decoder.feed(&buf, &mut body) {
            Ok(used) => drop(buf.drain(..used)),
            Err(rejection) => return send(&mut stream, rejection.to_response()),
        }
        if !decoder.is_done() {
            match stream.read(&mut chunk)? {
                0 => return Ok(()),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let (peer, local): (SocketAddr, SocketAddr) = if flaws.swapped_addresses {
        (local, peer)
    } else {
        (peer, local)
    };
    let gateway = Gateway {
        peer,
        local,
        server_software: "decoy".into(),
        document_root: root.to_path_buf(),
        timeout,
        log_tag: "decoy",
    };
    for _ in 0..=5 {
        let path = request.path().to_string();
        if !path.starts_with("/cgi-bin/") {
            return serve_static(&mut stream, root, &path);
        }
        let script = match request
            .check_method(&["GET", "HEAD", "POST"])
            .and_then(|()| cgi::resolve(&path, "/cgi-bin", cgi_dir))
        {
            Ok(script) => script,
            Err(rejection) => return send(&mut stream, rejection.to_response()),
        };
        match cgi::run(&request, &body, &script, &gateway, false, &mut stream)? {
            Outcome::Responded { .. } => return Ok(()),
            Outcome::LocalRedirect(location) if flaws.no_local_redirects => {
                return send(&mut stream, Response::new(302).header("Location", location));
            }
            Outcome::LocalRedirect(location) => {
                request = Request {
                    method: "GET".into(),
                    target: ladder::http::Target::parse("GET", &location)
                        .expect("ladder::cgi redirects locally only to a /path"),
                    ..request
                };
                body.clear();
            }
        }
    }
    send(
        &mut stream,
        Rejection::new(500, "too many local redirects").to_response(),
    )
}

fn serve_static(stream: &mut TcpStream, root: &Path, path: &str) -> io::Result<()> {
    let file = root.join(path.trim_start_matches('/'));
    let inside = file
        .canonicalize()
        .is_ok_and(|real| real.starts_with(root) && real.is_file());
    match std::fs::read(&file) {
        Ok(bytes) if inside => send(stream, Response::new(200).body(Body::Bytes(bytes))),
        _ => send(stream, Response::error(404, "no such file")),
    }
}

/// Send a whole response; one request per connection, so `Connection: close`.
fn send(stream: &mut TcpStream, mut response: Response) -> io::Result<()> {
    let (_, bytes) = response.render(None, &ServerInfo::PLAIN, false);
    stream.write_all(&bytes)
}
