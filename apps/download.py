"""A file download through wsgi.file_wrapper: the server may send it by sendfile.

    cargo run --bin lesson06_wsgi -- --chdir apps download:app
    curl -OJ http://127.0.0.1:8006/          # saves download.py, this very file
    truncate -s 1G /tmp/big.bin
    DOWNLOAD_FILE=/tmp/big.bin cargo run --bin lesson06_wsgi -- --chdir apps download:app
    curl -s http://127.0.0.1:8006/ | wc -c   # 1 GiB; strace the server to see sendfile

It serves one file: $DOWNLOAD_FILE if set, else this module's own source.
An app could read the file and yield its bytes, and every one of them would
then pass through Python. Instead it hands the open file to
environ['wsgi.file_wrapper'], an optional server feature (PEP 3333): a server
that recognises its own wrapper copies the file to the socket itself,
with sendfile, and the bytes never enter Python. A server without one still
works: wsgiref's FileWrapper reads the file in blocks.
"""
import os
from wsgiref.util import FileWrapper

PATH = os.environ.get("DOWNLOAD_FILE") or os.path.abspath(__file__)
# Header values are latin-1 text: keep the suggested file name plain ASCII.
NAME = os.path.basename(PATH).encode("ascii", "replace").decode().replace('"', "?")
BLOCK = 64 * 1024


def app(environ, start_response):
    # Open before start_response, so that a missing file can still get a 404.
    try:
        file = open(PATH, "rb")
    except OSError as error:
        body = f"cannot open {PATH}: {error.strerror}\n".encode("utf-8")
        start_response("404 Not Found", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ])
        return [body]

    size = os.fstat(file.fileno()).st_size
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        # The length is known: the client sees a progress bar, and the server
        # needs neither chunked framing nor closing the connection.
        ("Content-Length", str(size)),
        ("Content-Disposition", f'attachment; filename="{NAME}"'),
    ])
    wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
    # The server calls the wrapper's close(), which closes the file, whether
    # the download ends or the client goes away.
    return wrapper(file, BLOCK)
