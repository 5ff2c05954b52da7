"""A TCP relay in front of the emulator whose port refuses connections for a while: a real outage.

The client's connection points at the relay, which forwards every byte to the emulator. The first
request whose bytes contain ``starts_on`` (by default a ``task/progress`` read: the outage of a
waiting task) begins the outage: the relay closes its listening socket, so the kernel refuses every
``connect()`` to the port (``ECONNREFUSED``, no mock anywhere), and cuts every open connection,
that read's included. ``seconds`` later it listens on the same port again and forwards as before.
Meanwhile the port stays bound, not listening: refused, and not free for another process to take.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

_CHUNK = 65536


class RefusingRelay:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``, refusing for ``seconds`` once.

    :param target_port: the emulator's port.
    :param seconds: how long the port refuses connections.
    :param starts_on: bytes of a request that begin the outage (client to emulator direction).
    """

    def __init__(self, target_port: int, *, seconds: float, starts_on: bytes = b"/task/progress") -> None:
        self.target = ("127.0.0.1", target_port)
        self.seconds = seconds
        self.starts_on = starts_on
        #: Epoch seconds when the port stopped and started accepting again (None: not yet).
        self.outage_began: float | None = None
        self.outage_ended: float | None = None
        #: Connections cut when the outage began, and the error of a failed re-listen (if any).
        self.cut = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self._timer: threading.Timer | None = None
        self._listener = self._bind(0)
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._serve(self._listener)

    # -- listening ---------------------------------------------------------------------------------
    @staticmethod
    def _bind(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        return listener

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was shut: an outage began, or the relay closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink, watch in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, watch), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        try:
            while data := source.recv(_CHUNK):
                if watch and self.starts_on in data and self._begin_outage():
                    return  # the connection was cut with every other one
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    # -- the outage --------------------------------------------------------------------------------
    def _begin_outage(self) -> bool:
        """Stop listening and cut every connection; True if this call began the (only) outage."""
        with self._lock:
            if self.outage_began is not None or self._closed:
                return False
            self.outage_began = time.time()
            self._shut(self._listener)
            try:  # bound without listening: the kernel refuses connect()s, and the port stays ours
                self._listener = self._bind(self.port)
            except OSError as error:  # the port was taken meanwhile: the test must not pass
                self.error = error
            self.cut = len(self._open) // 2
            for conn in list(self._open):
                self._shut(conn)
            self._open.clear()
            self._timer = threading.Timer(self.seconds, self._end_outage)
            self._timer.daemon = True
            self._timer.start()
        return True

    def _end_outage(self) -> None:
        with self._lock:
            if self._closed or self.error is not None:
                return
            try:
                self._listener.listen(64)
            except OSError as error:
                self.error = error
                return
            self.outage_ended = time.time()
            self._serve(self._listener)

    def outage_over(self) -> bool:
        """Whether an outage began and the port listens again."""
        return self.outage_ended is not None

    # -- housekeeping ------------------------------------------------------------------------------
    def _drop(self, *conns: socket.socket) -> None:
        with self._lock:
            for conn in conns:
                self._open.discard(conn)
                self._shut(conn)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        """Shut down, then close: a thread blocked in ``accept``/``recv`` on it wakes up."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        """Stop listening and cut every connection for good."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            self._shut(self._listener)
            for conn in list(self._open):
                self._shut(conn)
            self._open.clear()
