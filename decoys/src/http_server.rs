//! The file server behind the ex04 decoys: correct (lesson 04's contract: a
//! pool, a head deadline, keep-alive, a graceful shutdown, every answer from
//! `ladder::static_files`), unless told to make one specific mistake. Not a
//! lesson: read `src/bin/lesson04_http_server.rs` for that.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::http::{
    self, Body, Limits, Parsed, Rejection, Request, Response, ServerInfo, Version, parse_request,
};
use ladder::static_files::{self, Root};

/// A test double for the grader's self-tests (tests/grade_decoys.rs).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<4>,
    #[arg(short = 'd', long, default_value = ".")]
    directory: PathBuf,
    #[arg(short = 'p', long, default_value = "HTTP/1.0")]
    protocol: String,
    #[arg(long, default_value_t = 8)]
    threads: usize,
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

/// The one mistake to make (all false: a correct server).
#[derive(Default, Clone, Copy)]
pub struct Flaws {
    /// Hold the channel's lock while serving: a pool of one.
    pub lock_held: bool,
    /// No head deadline: a silent client keeps its worker forever.
    pub no_timeout: bool,
    /// Exit at once on SIGTERM, cutting downloads short.
    pub exits_at_once: bool,
    /// Serve files by joining the decoded URL path to the root, unchecked.
    pub naive_paths: bool,
    /// Refuse `..` and friends, but follow symlinks out of the root.
    pub follows_symlinks: bool,
    /// Ignore `--timeout` and give every client one second.
    pub one_second_timeout: bool,
}

struct Config {
    root: Root,
    server: ServerInfo,
    timeout: Option<Duration>,
    flaws: Flaws,
}

static STOPPING: AtomicBool = AtomicBool::new(false);
static LISTENER: AtomicI32 = AtomicI32::new(-1);

pub fn main(flaws: Flaws) -> ExitCode {
    let args = Args::parse();
    http::set_error_page(static_files::python_error_page);
    args.listen.apply();
    match run(args, flaws) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("decoy: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, flaws: Flaws) -> io::Result<()> {
    if flaws.exits_at_once {
        ladder::shutdown::exit_on_termination()?;
    } else {
        ladder::shutdown::on_termination(|_| {
            STOPPING.store(true, Ordering::SeqCst);
            let fd = LISTENER.load(Ordering::SeqCst);
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
        })?;
    }
    let listener = TcpListener::bind(args.listen.addr())?;
    LISTENER.store(listener.as_raw_fd(), Ordering::SeqCst);
    let local = listener.local_addr()?;
    ladder::cli::announce_line(&format!(
        "Serving HTTP on {} ({})",
        local.ip(),
        ladder::cli::url("http", local)
    ))?;
    let timeout = if flaws.one_second_timeout {
        Some(Duration::from_secs(1))
    } else {
        (args.timeout > 0.0 && !flaws.no_timeout).then(|| Duration::from_secs_f64(args.timeout))
    };
    let config = Arc::new(Config {
        root: Root::new(&args.directory)?,
        server: ServerInfo {
            protocol: if args.protocol == "HTTP/1.1" {
                Version::Http11
            } else {
                Version::Http10
            },
            software: None,
        },
        timeout,
        flaws,
    });
    let (sender, receiver) = mpsc::channel::<(TcpStream, SocketAddr)>();
    let receiver = Arc::new(Mutex::new(receiver));
    let mut workers = Vec::new();
    for _ in 0..args.threads.max(1) {
        let receiver = Arc::clone(&receiver);
        let config = Arc::clone(&config);
        workers.push(thread::spawn(move || {
            loop {
                if config.flaws.lock_held {
                    let Ok(queue) = receiver.lock() else { return };
                    let Ok((stream, _)) = queue.recv() else {
                        return;
                    };
                    let _ = serve(stream, &config);
                } else {
                    let next = receiver.lock().map(|queue| queue.recv());
                    let Ok(Ok((stream, _))) = next else { return };
                    let _ = serve(stream, &config);
                }
            }
        }));
    }
    loop {
        match listener.accept() {
            Ok(job) => {
                let _ = sender.send(job);
            }
            Err(_) if STOPPING.load(Ordering::SeqCst) => break,
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    drop(sender);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn serve(mut stream: TcpStream, config: &Config) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let deadline = config.timeout.map(|t| Instant::now() + t);
        let (request, consumed) = loop {
            if !buf.is_empty() {
                match parse_request(&buf, &Limits::default()) {
                    Ok(Parsed::Complete { request, consumed }) => break (request, consumed),
                    Ok(Parsed::Partial) => {}
                    Err(rejection) => return refuse(&mut stream, &rejection, config),
                }
            } else if STOPPING.load(Ordering::SeqCst) {
                return Ok(());
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                if buf.is_empty() {
                    return Ok(());
                }
                return refuse(&mut stream, &Rejection::new(408, "too slow"), config);
            }
            let slice = left
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(250));
            stream.set_read_timeout(Some(slice))?;
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        };
        buf.drain(..consumed);
        let response = flawed_file(config, &request)
            .unwrap_or_else(|| static_files::respond(&config.root, &request));
        let may_keep_alive = !STOPPING.load(Ordering::SeqCst);
        if !answer(
            &mut stream,
            response,
            Some(&request),
            may_keep_alive,
            config,
        )? {
            return Ok(());
        }
    }
}

fn refuse(stream: &mut TcpStream, rejection: &Rejection, config: &Config) -> io::Result<()> {
    answer(stream, rejection.to_response(), None, false, config).map(|_| ())
}

/// The flawed ways to find a file; `None` means "do it properly".
fn flawed_file(config: &Config, request: &Request) -> Option<Response> {
    let file = if config.flaws.naive_paths {
        let decoded = request.target.decoded_path();
        let relative = String::from_utf8_lossy(&decoded)
            .trim_start_matches('/')
            .to_string();
        config.root.path().join(relative)
    } else if config.flaws.follows_symlinks {
        let segments = static_files::url_to_segments(request.path()).ok()?;
        let mut file = config.root.path().to_path_buf();
        file.extend(segments);
        file
    } else {
        return None;
    };
    let opened = File::open(&file).ok()?;
    let meta = opened.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let response = Response::new(200).header("Content-Type", "application/octet-stream");
    Some(response.body(Body::File {
        file: opened,
        len: meta.len(),
    }))
}

/// Send `response`; `Ok(true)` if the connection may carry another request.
fn answer(
    stream: &mut TcpStream,
    mut response: Response,
    request: Option<&Request>,
    may_keep_alive: bool,
    config: &Config,
) -> io::Result<bool> {
    let (plan, head) = response.render(request, &config.server, may_keep_alive);
    stream.write_all(&head)?;
    if let (Body::File { file, len }, true) = (response.body, plan.send_body) {
        io::copy(&mut file.take(len), stream)?;
    }
    Ok(plan.keep_alive)
}
