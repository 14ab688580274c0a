"""A simulated network camera: MJPEG over HTTP on loopback, which can lose power and come back.

For trying streams without a camera, and for the tests and the soak benchmark, which need a
camera that dies mid-stream (``stop`` drops every connection), stalls (connected but silent)
or ends its stream after a number of frames. Python's ``http.server`` is enough: one thread
per connection, frames at a fixed rate, the multipart format that OpenCV's FFmpeg reader and
browsers read.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["MjpegCamera"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.connections += 1
            stall = srv.stall_first and srv.connections == 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        sent = 0
        try:
            while not srv.stopping.is_set():
                if srv.per_connection is not None and sent >= srv.per_connection:
                    return  # the stream ends: the client sees EOF
                if stall and sent >= 3:
                    srv.stopping.wait(30)  # connected but silent
                    return
                jpeg = srv.jpegs[sent % len(srv.jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
                sent += 1
                srv.stopping.wait(1 / srv.fps)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    jpegs: list[bytes]
    fps: float
    per_connection: int | None
    stall_first: bool
    stopping: threading.Event
    lock: threading.Lock
    connections: int


class MjpegCamera:
    """An MJPEG-over-HTTP camera on 127.0.0.1 serving ``jpegs`` in a loop at ``fps``.

    ``per_connection``: end each connection after that many frames; ``stall_first``: the
    first connection goes silent after 3 frames. ``stop`` drops every connection (a camera
    losing power); ``start`` comes back on the same port. ``connections`` counts accepted
    connections since the last start.
    """

    def __init__(self, jpegs: list[bytes], fps: float = 15.0, per_connection: int | None = None,
                 stall_first: bool = False) -> None:
        if not jpegs or fps <= 0:
            raise ValueError("an MJPEG camera needs at least one JPEG and fps > 0")
        self.jpegs, self.fps = jpegs, fps
        self.per_connection, self.stall_first = per_connection, stall_first
        self.port = 0
        self._srv: _Server | None = None

    def start(self) -> MjpegCamera:
        """Listen (on the previous port after a stop) and serve in a daemon thread."""
        srv = _Server(("127.0.0.1", self.port), _Handler)
        srv.jpegs, srv.fps = self.jpegs, self.fps
        srv.per_connection, srv.stall_first = self.per_connection, self.stall_first
        srv.stopping, srv.lock, srv.connections = threading.Event(), threading.Lock(), 0
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self._srv = srv
        return self

    def stop(self) -> None:
        """Close the listener and end every connection."""
        if self._srv is not None:
            self._srv.stopping.set()
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    @property
    def connections(self) -> int:
        """Connections accepted since the last start (0 while stopped)."""
        return self._srv.connections if self._srv else 0

    @property
    def url(self) -> str:
        """The stream's URL."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"
