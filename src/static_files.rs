//! Serving a directory the way `python3 -m http.server` does: map a URL path
//! to a file without ever leaving the served directory, list directories,
//! guess the Content-Type, answer conditional GETs, and Python's error page.
//!
//! Introduced in lesson 04 (lessons/04-http-server.md), used by 05.
//!
//! Nothing here touches a socket. [`respond`] takes a parsed request and
//! returns an [`http::Response`](crate::http::Response): a status, headers,
//! and a body that is empty, bytes (a listing), or an open file. How that
//! goes on the wire (Content-Length, HEAD, keep-alive) is settled by
//! `Response::plan`, and how the bytes travel is the rung's business: lesson
//! 04 sends a file with `sendfile(2)` on a blocking socket, lesson 05's
//! event loop with `sendfile(2)` on a non-blocking one.
//!
//! The steps, in the order `respond` takes them:
//!
//! 1. [`url_to_segments`]: split the target's path, percent-decode each
//!    segment, and refuse anything that could climb out (`..`, encoded
//!    slashes, backslashes, NUL bytes);
//! 2. [`resolve`]: look at the file system; a directory asked for without
//!    its slash is redirected, a directory with `index.html` serves that, a
//!    symlink leading outside the root is refused;
//! 3. a file becomes a 200 (or a 304, see [`not_modified`]), a directory a
//!    listing ([`listing_html`]), anything else an error.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{SFlag, fstatat};

use crate::http::{Body, Rejection, Request, Response, Target, percent_decode};

/// The directory being served, opened once at start-up: every request path
/// is opened *beneath* this open directory (see `open_beneath`).
///
/// Like a shell `cd`'d into a directory, the server keeps the directory it
/// was given, even if that is renamed, or deleted and made again under the
/// same name: restart the server to serve the new one.
#[derive(Debug)]
pub struct Root {
    /// Canonical (absolute, no `.`/`..`, no symlinks), for the slow check
    /// in [`by_real_path`] and for CGI's `DOCUMENT_ROOT`.
    dir: PathBuf,
    /// The directory itself, open: what openat2(2) resolves beneath.
    handle: File,
}

impl Root {
    /// Canonicalize and open `dir`; fails if it does not exist or is not a
    /// directory.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let named =
            |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", dir.display()));
        let dir = fs::canonicalize(dir).map_err(named)?;
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let handle = File::open(&dir).map_err(named)?;
        Ok(Root { dir, handle })
    }

    /// The canonical directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// What a request target names, once the file system has been asked.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file inside the root, already open, with its `fstat`;
    /// `name` is the last segment of its URL (or the index file's name),
    /// which the Content-Type is guessed from, as Python does.
    File {
        file: File,
        meta: Metadata,
        name: String,
    },
    /// A directory (inside the root) with no index file, open: list it.
    Listing { dir: File },
    /// A directory asked for without its trailing slash: send the client to
    /// this `Location`, so that relative links in the listing work.
    Redirect { location: String },
}

const NOT_FOUND: Rejection = Rejection::new(404, "File not found");

/// Answer one request for a file under `root`: the whole of
/// `SimpleHTTPRequestHandler.send_head`, without the socket. A HEAD gets
/// the answer a GET would (a file is still opened and measured, so that its
/// length can be announced); `Response::plan` leaves the body out.
pub fn respond(root: &Root, request: &Request) -> Response {
    respond_below(root, "", request)
}

/// [`respond`] for a root mounted at the URL prefix `mount` (rung 8's
/// `--static /static/=DIR`, nginx's `location /static/ { alias DIR; }`):
/// the path below the prefix names the file, while a redirect and a
/// listing's title keep the whole URL, so a client stays under the prefix.
/// A request outside the prefix gets 404.
pub fn respond_below(root: &Root, mount: &str, request: &Request) -> Response {
    if request.check_method(&["GET", "HEAD"]).is_err() {
        return Response::error(501, &unsupported_method(&request.method));
    }
    let mount = mount.trim_end_matches('/');
    let resolved = match below(mount, request).and_then(|target| resolve(root, &target)) {
        Ok(resolved) => resolved,
        Err(refusal) => return Response::error(refusal.status, refusal.detail),
    };
    match resolved {
        // An empty body: `Content-Length: 0`, as Python sends on its 301.
        Resolved::Redirect { location } => {
            Response::new(301).header("Location", format!("{mount}{location}"))
        }
        Resolved::Listing { dir } => match listing_html(dir, &request.target) {
            Ok(html) => Response::with_bytes(200, "text/html; charset=utf-8", html),
            Err(_) => Response::error(404, "No permission to list directory"),
        },
        Resolved::File { file, meta, name } => {
            let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
            if not_modified(request, mtime) {
                return Response::new(304); // no Content-Type either, as in Python
            }
            Response::new(200)
                .header("Content-Type", content_type(&name))
                .header("Last-Modified", http_date(mtime))
                .body(Body::File {
                    file,
                    len: meta.len(),
                })
        }
    }
}

/// The request's target with `mount` taken off its path (the target
/// itself when nothing is mounted); 404 for a path outside the mount.
fn below(mount: &str, request: &Request) -> Result<Target, Rejection> {
    if mount.is_empty() {
        return Ok(request.target.clone());
    }
    let path = match request.path().strip_prefix(mount) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return Err(NOT_FOUND),
    };
    let query = if request.target.has_query() { "?" } else { "" };
    let raw = format!("{path}{query}{}", request.query());
    Target::parse(&request.method, &raw).map_err(|_| NOT_FOUND)
}

/// Python's `send_error` message for a method it has no `do_X` for.
fn unsupported_method(method: &str) -> String {
    // Python formats it with %r; a method token never holds `"` or `\`.
    if method.contains('\'') {
        format!("Unsupported method (\"{method}\")")
    } else {
        format!("Unsupported method ('{method}')")
    }
}

// ANCHOR: url_to_segments
/// Split the path of a request target (`Target::path`, still
/// percent-encoded) into file-name segments, decoded, or refuse it.
///
/// The rules, and why each exists:
/// - each segment is split off *before* it is percent-decoded, so `%2f` can
///   never become a separator, and a decoded `/` is refused rather than
///   guessed at (no file name on Unix can contain one anyway); that is why
///   this takes the encoded path and not `Target::decoded_path`;
/// - `..` (also as `%2e%2e`), a NUL byte and a backslash are refused; empty
///   segments and `.` are dropped, as `posixpath.normpath` drops them.
pub fn url_to_segments(path: &str) -> Result<Vec<OsString>, Rejection> {
    let mut segments = Vec::new();
    for raw in path.split('/') {
        let name = percent_decode(raw);
        match name.as_slice() {
            b"" | b"." => continue,
            b".." => return Err(Rejection::new(400, "Parent directory in path")),
            _ if name.contains(&0) => return Err(Rejection::new(400, "NUL byte in path")),
            _ if name.contains(&b'/') => return Err(Rejection::new(400, "Encoded slash in path")),
            _ if name.contains(&b'\\') => return Err(Rejection::new(400, "Backslash in path")),
            _ => segments.push(OsString::from_vec(name)),
        }
    }
    Ok(segments)
}
// ANCHOR_END: url_to_segments

/// Map a request target to what it names under `root`.
///
/// Errors are the statuses to answer with: 400 for a path refused by
/// [`url_to_segments`], 403 for a path that leads outside the root through a
/// symlink, 404 for anything missing, unreadable or not a regular file.
pub fn resolve(root: &Root, target: &Target) -> Result<Resolved, Rejection> {
    // A browser never sends a fragment (`#...`); Python drops a stray one.
    let path = one_leading_slash(target.path().split('#').next().unwrap_or("/"));
    let segments = url_to_segments(path)?;
    // Relative to the root; "." for the root itself.
    let relative: PathBuf = if segments.is_empty() {
        ".".into()
    } else {
        segments.iter().collect()
    };
    // openat2(2) and fstat(2): what would we really be serving?
    let (file, meta) = open_beneath(root, &relative)?;
    if meta.is_dir() {
        if !path.ends_with('/') {
            let location = with_slash(path, target.query());
            return Ok(Resolved::Redirect { location });
        }
        // Python asks os.path.isfile(index), then opens it: an index that
        // is missing or no regular file means "try the next one"; one that
        // leads outside (403), or is a file we cannot open (404), is refused.
        for index in ["index.html", "index.htm"] {
            match open_beneath(root, &relative.join(index)) {
                Ok((file, meta)) if meta.is_file() => {
                    let name = index.to_string();
                    return Ok(Resolved::File { file, meta, name });
                }
                Err(refusal)
                    if refusal.status == 403
                        || kind_at(&file, index.as_ref(), true) == Some(SFlag::S_IFREG) =>
                {
                    return Err(refusal);
                }
                _ => {}
            }
        }
        // The listing reads the directory we opened, not its name.
        return Ok(Resolved::Listing { dir: file });
    }
    // `/file.txt/` names no directory: Python answers 404, so do we. A FIFO
    // or a device is no file to serve either.
    if path.ends_with('/') || !meta.is_file() {
        return Err(NOT_FOUND);
    }
    let name = segments.last().map(|s| s.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    Ok(Resolved::File { file, meta, name })
}

/// `//evil.example/` becomes `/evil.example/`. A Location starting with `//`
/// would send the browser to another host (an open redirect), so Python
/// collapses leading slashes before anything else (gh-87389); so do we.
pub fn one_leading_slash(path: &str) -> &str {
    if path.starts_with("//") {
        &path[path.len() - path.trim_start_matches('/').len() - 1..]
    } else {
        path
    }
}

/// `/sub` and the query `x=1` become `/sub/?x=1`: the slash goes after the
/// path, and the query is kept (an empty `?` is dropped, as `urlunsplit`
/// drops it).
fn with_slash(path: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{path}/")
    } else {
        format!("{path}/?{query}")
    }
}

// ANCHOR: inside_root
/// Open `relative` (clean segments, no `..`) beneath the root, and `fstat`
/// it; or refuse: 403 if it leads outside the root, 404 if it is missing.
///
/// openat2(2) with RESOLVE_BENEATH makes the kernel check every step of its
/// walk, each symlink included, against the open root directory: if a step
/// would leave it, the call fails with EXDEV. The check and the open are
/// one system call, so nothing can be swapped in between (see the lesson's
/// "TOCTOU").
fn open_beneath(root: &Root, relative: &Path) -> Result<(File, Metadata), Rejection> {
    // NO_MAGICLINKS: /proc/self/fd/N and its kind lead anywhere; refuse them.
    let beneath = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    let file = match open_at(&root.handle, relative, beneath) {
        Ok(file) => file,
        // EXDEV also comes from harmless paths: an absolute symlink, even
        // one that points back inside, or a relative one that steps out and
        // back in. ENOSYS/EPERM: a kernel (before 5.6) or a container
        // without openat2. Either way, ask the slow way.
        Err(Errno::EXDEV | Errno::ENOSYS | Errno::EPERM) => return by_real_path(root, relative),
        Err(_) => return Err(NOT_FOUND),
    };
    // fstat(2) on what we opened, not stat(2) on a name that may have changed.
    let meta = file.metadata().map_err(|_| NOT_FOUND)?;
    Ok((file, meta))
}

/// The slow way: realpath(3) resolves every symlink in the path, one
/// readlink(2) per component, and we refuse the result unless it is still
/// under the root (`Path::starts_with` compares whole components, so
/// `/srv/www-old` is not inside `/srv/www`). What is left has no symlink in
/// it, so we open it beneath the root with *no* symlink allowed: one
/// swapped in since realpath fails the open instead of being followed.
fn by_real_path(root: &Root, relative: &Path) -> Result<(File, Metadata), Rejection> {
    let path = root.dir.join(relative);
    let real = fs::canonicalize(&path).map_err(|_| NOT_FOUND)?;
    let Ok(rest) = real.strip_prefix(&root.dir) else {
        crate::trace!(
            "refused {} -> {}: outside the root",
            path.display(),
            real.display()
        );
        return Err(Rejection::new(
            403,
            "Path leads outside the served directory",
        ));
    };
    let rest = if rest.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rest
    };
    let no_symlinks = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
    let file = match open_at(&root.handle, rest, no_symlinks) {
        Ok(file) => file,
        // No openat2 at all: open the real path by name, O_NOFOLLOW, which
        // leaves the directories above it open to a swap.
        Err(Errno::ENOSYS | Errno::EPERM) => File::options()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
            .open(&real)
            .map_err(|_| NOT_FOUND)?,
        Err(_) => return Err(NOT_FOUND),
    };
    let meta = file.metadata().map_err(|_| NOT_FOUND)?;
    Ok((file, meta))
}
// ANCHOR_END: inside_root

/// openat2(2), read-only, beneath `dir`. O_NONBLOCK: opening a FIFO must not
/// wait for a writer (it has no effect on files and directories). EAGAIN
/// means a rename raced with the walk, and the kernel asks for another try.
fn open_at(dir: &File, path: &Path, resolve: ResolveFlag) -> nix::Result<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .resolve(resolve);
    let mut tries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < 3 => tries += 1,
            result => return result.map(File::from),
        }
    }
}

/// The type of `name` in the open directory `dir` (fstatat(2)): of what a
/// final symlink leads to, or with `follow` false, of the link itself.
fn kind_at(dir: &impl AsFd, name: &OsStr, follow: bool) -> Option<SFlag> {
    let flags = if follow {
        AtFlags::empty()
    } else {
        AtFlags::AT_SYMLINK_NOFOLLOW
    };
    let stat = fstatat(dir, name, flags).ok()?;
    Some(SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT)
}

// ANCHOR: conditional_get
/// Should a GET for a file last modified at `mtime` be answered 304?
///
/// Python's rule (RFC 9110 §13.1.3): only when `If-Modified-Since` is
/// present, parses as a date, and the file is not newer than that date at
/// one-second resolution; and never when `If-None-Match` is present, since an
/// entity tag, when sent, takes precedence (Python sends no ETags, so it
/// simply ignores the date then).
pub fn not_modified(request: &Request, mtime: SystemTime) -> bool {
    if request.values("if-none-match").next().is_some() {
        return false;
    }
    let Some(since) = request.header("if-modified-since") else {
        return false;
    };
    let Ok(since) = httpdate::parse_http_date(&as_gmt(since.trim())) else {
        return false; // an ill-formed date is ignored, not an error
    };
    unix_seconds(mtime) <= unix_seconds(since)
}
// ANCHOR_END: conditional_get

/// Python parses `If-Modified-Since` as an e-mail date, so `+0000`, `-0000`
/// and `UTC` mean GMT there too (`date -u -R` prints `+0000`); say `GMT` so
/// httpdate, which knows only HTTP's three formats, accepts them. Any other
/// offset is ignored by Python, and fails to parse here.
fn as_gmt(date: &str) -> String {
    for zone in [" +0000", " -0000", " UTC"] {
        if let Some(rest) = date.strip_suffix(zone) {
            return format!("{rest} GMT");
        }
    }
    date.to_string()
}

/// Whole seconds since 1970 (a time before 1970 counts as 0).
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An HTTP date (`Sat, 21 Nov 2026 10:00:00 GMT`). The format only covers
/// the years 1970 to 9999 (and httpdate panics outside them), so a file
/// stamped earlier or later is reported at the nearest end.
pub fn http_date(t: SystemTime) -> String {
    const LAST: u64 = 253_402_300_799; // 9999-12-31 23:59:59
    let secs = unix_seconds(t).min(LAST);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

// ANCHOR: listing
/// The directory listing page, byte for byte as Python 3.11 writes it.
/// Python shows the request target in the title, query included, decoded
/// and HTML-escaped.
pub fn listing_html(dir: File, target: &Target) -> io::Result<Vec<u8>> {
    // fdopendir(3) on the directory `resolve` opened: we list what we
    // checked, whatever its name leads to by now.
    let mut dir = nix::dir::Dir::from_fd(dir.into())?;
    let mut names: Vec<OsString> = dir
        .iter()
        .filter_map(|entry| entry.ok())
        .map(|entry| OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string())
        .filter(|name| name != "." && name != "..")
        .collect();
    // Python: list.sort(key=lambda a: a.lower()), a stable sort.
    names.sort_by_cached_key(|name| name.to_string_lossy().to_lowercase());
    let shown = percent_decode(one_leading_slash(&target.origin_form()));
    let shown = html_escape(&String::from_utf8_lossy(&shown));
    let title = format!("Directory listing for {shown}");
    let mut lines = vec![
        "<!DOCTYPE HTML>".to_string(),
        "<html lang=\"en\">".to_string(),
        "<head>".to_string(),
        "<meta charset=\"utf-8\">".to_string(),
        format!("<title>{title}</title>\n</head>"),
        format!("<body>\n<h1>{title}</h1>"),
        "<hr>\n<ul>".to_string(),
    ];
    for name in names {
        let mut link = name.as_bytes().to_vec();
        let mut display = name.to_string_lossy().into_owned();
        if kind_at(&dir, &name, true) == Some(SFlag::S_IFDIR) {
            // follows symlinks: a link to a directory links with a slash...
            link.push(b'/');
            display.push('/');
        }
        if kind_at(&dir, &name, false) == Some(SFlag::S_IFLNK) {
            // ...but displays with an @, as `ls -F` does.
            display = format!("{}@", name.to_string_lossy());
        }
        lines.push(format!(
            "<li><a href=\"{}\">{}</a></li>",
            percent_encode(&link),
            html_escape(&display)
        ));
    }
    lines.push("</ul>\n<hr>\n</body>\n</html>\n".to_string());
    Ok(lines.join("\n").into_bytes())
}
// ANCHOR_END: listing

/// Python's `send_error` page (its `DEFAULT_ERROR_MESSAGE`): the message is
/// the short text, the explanation Python's description of the status.
/// Rung 4 installs it with `http::set_error_page`, so that every error it
/// sends looks like Python's, a malformed request head's included.
pub fn python_error_page(status: u16, message: &str) -> (&'static str, Vec<u8>) {
    let message = html_escape(message);
    let explain = html_escape(explanation(status));
    let page = format!(
        "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        \
         <meta charset=\"utf-8\">\n        <title>Error response</title>\n    \
         </head>\n    <body>\n        <h1>Error response</h1>\n        \
         <p>Error code: {status}</p>\n        <p>Message: {message}.</p>\n        \
         <p>Error code explanation: {status} - {explain}.</p>\n    \
         </body>\n</html>\n"
    );
    ("text/html;charset=utf-8", page.into_bytes())
}

/// The long descriptions Python's `http.HTTPStatus` gives the statuses this
/// server sends.
fn explanation(status: u16) -> &'static str {
    match status {
        400 => "Bad request syntax or unsupported method",
        403 => "Request forbidden -- authorization will not help",
        404 => "Nothing matches the given URI",
        408 => "Request timed out; try again later",
        413 => "Entity is too large",
        414 => "URI is too long",
        431 => {
            "The server is unwilling to process the request because its header fields are too large"
        }
        500 => "Server got itself in trouble",
        501 => "Server does not support this operation",
        502 => "Invalid responses from another server/proxy",
        505 => "Cannot fulfill request",
        _ => "???",
    }
}

// ANCHOR: content_type
/// The Content-Type for a file name, from its extension: Python 3.11's
/// built-in `mimetypes` table for the common types (http.server overrides
/// the compressions), `application/octet-stream` for anything unknown.
///
/// Python also reads `/etc/mime.types` when the machine has one, so its
/// answers vary from machine to machine (`.js` is `application/javascript`
/// built in, `text/javascript` on Debian); we always give the built-in one.
pub fn content_type(name: &str) -> &'static str {
    // `posixpath.splitext`: from the last dot, unless the name starts there.
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.trim_start_matches('.');
    let Some(dot) = base.rfind('.') else {
        return "application/octet-stream";
    };
    let ext = &base[dot..];
    // http.server's own table comes first, case-sensitively, then lowercased.
    for e in [ext, &ext.to_lowercase()] {
        match e {
            ".gz" => return "application/gzip",
            ".Z" => return "application/octet-stream",
            ".bz2" => return "application/x-bzip2",
            ".xz" => return "application/x-xz",
            _ => {}
        }
    }
    let ext = ext.to_lowercase();
    let found = MIME_TYPES.iter().find(|(e, _)| *e == ext);
    found.map_or("application/octet-stream", |(_, t)| *t)
}
// ANCHOR_END: content_type

/// Extension → type, as Python 3.11's `mimetypes` ships them.
const MIME_TYPES: &[(&str, &str)] = &[
    (".html", "text/html"),
    (".htm", "text/html"),
    (".txt", "text/plain"),
    (".text", "text/plain"),
    (".css", "text/css"),
    (".csv", "text/csv"),
    (".js", "application/javascript"),
    (".mjs", "application/javascript"),
    (".json", "application/json"),
    (".webmanifest", "application/manifest+json"),
    (".xml", "text/xml"),
    (".xsl", "application/xml"),
    (".py", "text/x-python"),
    (".c", "text/plain"),
    (".h", "text/plain"),
    (".sh", "application/x-sh"),
    (".tex", "application/x-tex"),
    (".tsv", "text/tab-separated-values"),
    (".vtt", "text/vtt"),
    (".png", "image/png"),
    (".jpg", "image/jpeg"),
    (".jpeg", "image/jpeg"),
    (".gif", "image/gif"),
    (".svg", "image/svg+xml"),
    (".ico", "image/vnd.microsoft.icon"),
    (".bmp", "image/bmp"),
    (".tif", "image/tiff"),
    (".tiff", "image/tiff"),
    (".avif", "image/avif"),
    (".pdf", "application/pdf"),
    (".wasm", "application/wasm"),
    (".zip", "application/zip"),
    (".tar", "application/x-tar"),
    (".tgz", "application/x-tar"),
    (".mp4", "video/mp4"),
    (".mpeg", "video/mpeg"),
    (".webm", "video/webm"),
    (".mov", "video/quicktime"),
    (".avi", "video/x-msvideo"),
    (".mp3", "audio/mpeg"),
    (".wav", "audio/x-wav"),
    (".aac", "audio/aac"),
    (".opus", "audio/opus"),
    (".doc", "application/msword"),
    (".xls", "application/vnd.ms-excel"),
    (".ppt", "application/vnd.ms-powerpoint"),
    (".eml", "message/rfc822"),
    (".bin", "application/octet-stream"),
];

/// `urllib.parse.quote(name)`: every byte but letters, digits, `_.-~` and
/// `/` becomes `%XX` (upper-case hex), so a name is safe inside `href="..."`.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `html.escape(text, quote=False)`: `&`, `<` and `>` become entities.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of a target as the parser splits it, into segments.
    fn segments(target: &str) -> Result<Vec<OsString>, u16> {
        let target = Target::parse("GET", target).map_err(|r| r.status)?;
        url_to_segments(target.path()).map_err(|r| r.status)
    }

    #[test]
    fn segments_refuse_every_way_out() {
        let refused = [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/..%2fetc%2fpasswd",
            "/a%2f..%2f..%2fetc",
            "/a%00.txt",
            "/..\\..\\etc\\passwd",
            "/a%5c..%5cb",
            "http://host/../etc/passwd",
        ];
        for target in refused {
            assert_eq!(segments(target), Err(400), "{target}");
        }
    }

    #[test]
    fn segments_decode_and_drop_dots() {
        let got = segments("//a/./b%20c//%C3%BC.txt?x=/../").unwrap();
        let want: Vec<OsString> = ["a", "b c", "ü.txt"].iter().map(OsString::from).collect();
        assert_eq!(got, want);
        assert_eq!(segments("http://host").unwrap(), Vec::<OsString>::new());
    }

    #[test]
    fn head_opens_the_file_and_plan_leaves_the_body_out() {
        use crate::http::{Limits, Parsed, ServerInfo, parse_request};
        let dir = std::env::temp_dir().join(format!("static-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.txt"), "hello").unwrap();
        let root = Root::new(&dir).unwrap();
        let raw = b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
        let Ok(Parsed::Complete { request, .. }) = parse_request(raw, &Limits::default()) else {
            panic!("a valid head");
        };
        let response = respond(&root, &request);
        assert!(matches!(response.body, Body::File { len: 5, .. }));
        let plan = response.plan(Some(&request), &ServerInfo::PLAIN, true);
        assert!(!plan.send_body);
        let mut head = Vec::new();
        response.write_head(&plan, &ServerInfo::PLAIN, &mut head);
        assert!(String::from_utf8_lossy(&head).contains("Content-Length: 5\r\n"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting_matches_python() {
        assert_eq!(
            percent_encode("a&b <c>.txt".as_bytes()),
            "a%26b%20%3Cc%3E.txt"
        );
        assert_eq!(percent_encode("ü.txt".as_bytes()), "%C3%BC.txt");
        assert_eq!(percent_encode(b"dir/~x_-"), "dir/~x_-");
        assert_eq!(html_escape("a&b <c>\"'"), "a&amp;b &lt;c&gt;\"'");
    }

    #[test]
    fn content_types_follow_python_builtin_table() {
        let table = [
            ("index.html", "text/html"),
            ("A.HTML", "text/html"),
            ("x.tar.gz", "application/gzip"),
            ("x.Z", "application/octet-stream"),
            ("x.js", "application/javascript"),
            ("x.wasm", "application/wasm"),
            (".bashrc", "application/octet-stream"),
            ("noext", "application/octet-stream"),
            ("x.unknown", "application/octet-stream"),
            ("dir.d/file", "application/octet-stream"),
        ];
        for (name, want) in table {
            assert_eq!(content_type(name), want, "{name}");
        }
    }

    #[test]
    fn redirect_keeps_query() {
        assert_eq!(with_slash("/sub", "x=1&y"), "/sub/?x=1&y");
        assert_eq!(with_slash("/sub", ""), "/sub/");
        assert_eq!(one_leading_slash("///evil.example/x"), "/evil.example/x");
        assert_eq!(one_leading_slash("/a//b"), "/a//b");
    }

    #[test]
    fn dates_outside_the_format_do_not_panic() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(http_date(before), "Thu, 01 Jan 1970 00:00:00 GMT");
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn error_page_is_pythons() {
        let (content_type, page) = python_error_page(404, "File not found");
        let page = String::from_utf8(page).unwrap();
        assert_eq!(content_type, "text/html;charset=utf-8");
        assert!(page.contains("<p>Message: File not found.</p>"));
        assert!(
            page.contains("<p>Error code explanation: 404 - Nothing matches the given URI.</p>")
        );
    }
}
