//! A small CGI server on `ladder::cgi` for the ex03 decoys: correct unless a
//! flaw is switched on. One request per connection; enough for the grader,
//! which always closes after one answer.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::cgi::{self, Gateway, Outcome};
use ladder::connection::{Connection, Got};
use ladder::http::{Body, Limits, Request, Response};

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
    stream: TcpStream,
    cgi_dir: &Path,
    root: &Path,
    timeout: Duration,
    flaws: &Flaws,
) -> io::Result<()> {
    let (peer, local) = (stream.peer_addr()?, stream.local_addr()?);
    let mut conn = Connection::new(stream, peer, Limits::default());
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    let request = match conn.read_request(deadline)? {
        Got::Done(request) => request,
        other => return conn.refuse(None, other),
    };
    let body = match conn.read_body(&request, deadline)? {
        Got::Done(body) => body,
        other => return conn.refuse(Some(&request), other),
    };
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
    let script_for = |request: &Request| {
        if !request.path().starts_with("/cgi-bin/") {
            return Ok(None);
        }
        request
            .check_method(&["GET", "HEAD", "POST"])
            .and_then(|()| cgi::resolve(request.path(), "/cgi-bin", cgi_dir))
            .map(Some)
    };
    if flaws.no_local_redirects {
        // One run of the script, and its local redirect handed to the client.
        if let Ok(Some(script)) = script_for(&request) {
            let outcome = cgi::run_script(&mut conn, &request, &body, &script, &gateway, false)?;
            if let Outcome::LocalRedirect(location) = outcome {
                let redirect = Response::new(302).header("Location", location);
                conn.respond(Some(&request), redirect, false)?;
            }
            return Ok(());
        }
    }
    let static_file = |request: &Request| serve_static(root, request.path());
    cgi::serve(
        &mut conn,
        &request,
        &body,
        &gateway,
        false,
        script_for,
        static_file,
    )
    .map(drop)
}

fn serve_static(root: &Path, path: &str) -> Response {
    let file = root.join(path.trim_start_matches('/'));
    let inside = file
        .canonicalize()
        .is_ok_and(|real| real.starts_with(root) && real.is_file());
    match std::fs::read(&file) {
        Ok(bytes) if inside => Response::new(200).body(Body::Bytes(bytes)),
        _ => Response::error(404, "no such file"),
    }
}
