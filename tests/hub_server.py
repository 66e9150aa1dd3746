"""A stand-in for the Hugging Face hub's file endpoint, for download tests (no network needed).

``GET``/``HEAD`` ``{endpoint}/{repo}/resolve/{revision}/{path}`` answer the way the hub does for a
file: ``Content-Length``, ``ETag``, ``Accept-Ranges: bytes``, and ``Range: bytes=N-`` gives
``206`` with ``Content-Range`` (``416`` past the end). The server counts requests and bytes sent,
and can be told to cut a response after some bytes, ignore ranges (answer 200), or answer a few
requests with an error status. Point ``HF_ENDPOINT`` at ``server.endpoint``.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class HubServer:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.bytes_served = 0
        self.cut_after: int | None = None  # cut the next response(s) after this many body bytes
        self.cuts_left = 0
        self.fail_after_cut: list[int] = []  # statuses to answer with once a cut has happened
        self.fail_statuses: list[int] = []  # answer the next requests with these statuses, in order
        self.ignore_range = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, repo: str, revision: str, path: str, data: bytes) -> None:
        self.files[(repo, revision, path)] = data

    def cut_once(self, after: int) -> None:
        self.cut_after, self.cuts_left = after, 1

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the client went away (after a cut, or giving up): nothing to answer

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                range_header = self.headers.get("Range")
                with hub.lock:
                    hub.requests.append((self.command, self.path, range_header))
                    fail = hub.fail_statuses.pop(0) if hub.fail_statuses else None
                if fail is not None:
                    self._plain(fail, b"try later")
                    return
                data = hub._lookup(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end, status = 0, len(data) - 1, 200
                match = RANGE_RE.match(range_header or "")
                if match and not hub.ignore_range:
                    start = int(match.group(1))
                    end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(end + 1 - start))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                with hub.lock:
                    cut = hub.cut_after if hub.cuts_left > 0 else None
                    if cut is not None:
                        hub.cuts_left -= 1
                        hub.fail_statuses.extend(hub.fail_after_cut)
                        hub.fail_after_cut = []
                chunk, position, sent = 64 * 1024, start, 0
                try:
                    while position <= end:
                        piece = data[position:min(position + chunk, end + 1)]
                        if cut is not None and sent + len(piece) > cut:
                            piece = piece[:cut - sent]
                        self.wfile.write(piece)
                        with hub.lock:
                            hub.bytes_served += len(piece)
                        position += len(piece)
                        sent += len(piece)
                        if cut is not None and sent >= cut:
                            self.wfile.flush()
                            self.close_connection = True
                            # The connection ends mid-file: the bytes sent arrive, then the end of the stream.
                            self.connection.shutdown(socket.SHUT_WR)
                            return
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _plain(self, status: int, text: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def _lookup(self, path: str) -> bytes | None:
        head, sep, rest = unquote(path.split("?", 1)[0]).lstrip("/").partition("/resolve/")
        if not sep:
            return None
        revision, _, file_path = rest.partition("/")
        return self.files.get((head, revision, file_path))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentServer:
    """Accepts connections (the kernel's backlog does) and never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def closed_port_endpoint() -> str:
    """An address nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
