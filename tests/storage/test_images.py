"""Picture download, verification and grid split, against a real HTTP server on loopback.

``PictureServer`` is also used by ``test_save_images.py``: a ``ThreadingHTTPServer`` in a thread
that serves what each test registers and counts the requests per path.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from airflow_provider_lotimage.client.redaction import redact_url
from airflow_provider_lotimage.exceptions import ImageDownloadError
from airflow_provider_lotimage.storage.images import (
    MAX_REDIRECTS,
    fetch_picture,
    is_public_host,
    picture_info,
    redirect_refusal,
    split_grid,
    verify_picture,
)

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
QUADRANT_COLOURS = (RED, GREEN, BLUE, YELLOW)  # top-left, top-right, bottom-left, bottom-right

Route = Callable[[BaseHTTPRequestHandler], None]


def make_png(width: int, height: int, colour: tuple[int, int, int] = RED, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format=fmt)
    return out.getvalue()


def make_noise(width: int, height: int) -> bytes:
    """A picture that does not compress: its PNG is big enough to cut short."""
    out = io.BytesIO()
    Image.effect_noise((width, height), 64).save(out, format="PNG")
    return out.getvalue()


def make_grid(width: int = 64, height: int = 48) -> bytes:
    """A grid whose quadrants have distinct colours, cut where split_grid cuts."""
    image = Image.new("RGB", (width, height))
    mid_x, mid_y = width // 2, height // 2
    boxes = (
        (0, 0, mid_x, mid_y),
        (mid_x, 0, width, mid_y),
        (0, mid_y, mid_x, height),
        (mid_x, mid_y, width, height),
    )
    for box, colour in zip(boxes, QUADRANT_COLOURS, strict=True):
        image.paste(colour, box)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class PictureServer:
    """A loopback HTTP server whose answers are registered per path; counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                # The client hanging up (size cap, timeout) is what several tests want.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server.hits[path] += 1
                route = server.routes.get(path)
                if route is None:
                    send(self, b"not found", status=404, content_type="text/plain")
                else:
                    route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, query: str = "") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}" + (f"?{query}" if query else "")

    def serve(self, path: str, body: bytes, **kwargs: object) -> str:
        self.routes[path] = lambda handler: send(handler, body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send(
    handler: BaseHTTPRequestHandler,
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "image/png",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture(scope="module")
def picture_server() -> Iterator[PictureServer]:
    server = PictureServer()
    yield server
    server.close()


@pytest.fixture
def server(picture_server: PictureServer) -> PictureServer:
    picture_server.routes.clear()
    picture_server.hits.clear()
    return picture_server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def fetch(session: requests.Session, url: str, *, max_bytes: int = 1_000_000, timeout: float = 5.0) -> bytes:
    return fetch_picture(session, url, max_bytes=max_bytes, timeout=timeout)


# --- fetch_picture -----------------------------------------------------------------------------


def test_fetch_returns_the_exact_bytes(server: PictureServer, session: requests.Session) -> None:
    body = make_png(30, 20)
    assert fetch(session, server.serve("/p.png", body)) == body
    assert picture_info(body) == (30, 20, "PNG")


@pytest.mark.parametrize("status", [403, 410])
def test_expired_link_says_so_without_the_signature(
    server: PictureServer, session: requests.Session, status: int
) -> None:
    server.serve("/attachments/1/x.png", b"Forbidden", status=status, content_type="text/plain")
    url = server.url("/attachments/1/x.png", "ex=66b2&is=66b1&hm=SECRETSIGNATURE")
    with pytest.raises(ImageDownloadError) as info:
        fetch(session, url)
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert "expired" in message and "24 h" in message and "task/progress" in message
    assert "/attachments/1/x.png" in message
    assert "SECRETSIGNATURE" not in message and "hm=" not in message
    assert info.value.http_status == status


def test_other_http_errors_are_reported(server: PictureServer, session: requests.Session) -> None:
    server.serve("/boom.png", b"oops", status=500, content_type="text/plain")
    with pytest.raises(ImageDownloadError, match="HTTP 500") as info:
        fetch(session, server.url("/boom.png"))
    assert "expired" not in str(info.value)


def test_declared_length_over_cap_is_refused_before_reading(
    server: PictureServer, session: requests.Session
) -> None:
    def huge(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(10**9))
        handler.end_headers()
        server.stopping.wait(5)  # never sends the body: only the header can fail the download

    server.routes["/huge.png"] = huge
    started = time.monotonic()
    with pytest.raises(ImageDownloadError, match="1000000000 bytes, more than max_bytes=1000"):
        fetch(session, server.url("/huge.png"), max_bytes=1000)
    assert time.monotonic() - started < 2


def test_undeclared_length_is_capped_while_streaming(
    server: PictureServer, session: requests.Session
) -> None:

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Connection", "close")  # body ends when the connection does
        handler.end_headers()
        for _ in range(1000):  # up to 64 MB if nobody stops reading
            handler.wfile.write(b"\0" * 65536)

    server.routes["/endless.png"] = endless
    with pytest.raises(ImageDownloadError, match="larger than max_bytes=100000"):
        fetch(session, server.url("/endless.png"), max_bytes=100_000)


def test_cap_applies_to_decoded_bytes(server: PictureServer, session: requests.Session) -> None:
    bomb = gzip.compress(b"\0" * 20_000_000)  # ~20 kB on the wire, 20 MB decoded
    server.serve("/bomb.png", bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(ImageDownloadError, match="larger than max_bytes"):
        fetch(session, server.url("/bomb.png"), max_bytes=1_000_000)


def test_slow_body_hits_the_total_deadline(server: PictureServer, session: requests.Session) -> None:
    body = make_png(20, 20)

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:  # each byte well within a socket timeout; the whole far beyond the deadline
            if server.stopping.wait(0.05):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    server.routes["/slow.png"] = drip
    started = time.monotonic()
    with pytest.raises(ImageDownloadError, match=r"did not arrive within 0\.5 s"):
        fetch(session, server.url("/slow.png"), timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_stalled_body_times_out(server: PictureServer, session: requests.Session) -> None:
    def stall(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"\x89PNG")
        handler.wfile.flush()
        server.stopping.wait(10)

    server.routes["/stall.png"] = stall
    started = time.monotonic()
    with pytest.raises(ImageDownloadError, match=r"did not arrive within 0\.5 s"):
        fetch(session, server.url("/stall.png"), timeout=0.5)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>Link expired</body></html>", "text/html"),
        (b"", "image/png"),
        (make_noise(64, 64)[:2000], "image/png"),  # truncated
        (make_png(8, 8, fmt="BMP"), "image/bmp"),  # a picture, but not a format we accept
    ],
    ids=["html", "empty", "truncated", "bmp"],
)
def test_not_a_picture(
    server: PictureServer, session: requests.Session, body: bytes, content_type: str
) -> None:
    url = server.serve("/x.png", body, content_type=content_type)
    with pytest.raises(ImageDownloadError, match=r"not a (complete )?picture"):
        fetch(session, url + "?hm=SECRET")


def test_connection_errors_hide_the_query_string(session: requests.Session) -> None:
    with pytest.raises(ImageDownloadError, match="could not download picture") as info:
        fetch(session, "http://127.0.0.1:1/a/b.png?hm=SECRETSIGNATURE", timeout=2)
    assert "SECRETSIGNATURE" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_non_http_url_is_refused(session: requests.Session) -> None:
    with pytest.raises(ImageDownloadError, match="not an http"):
        fetch(session, "file:///etc/passwd")


# --- redirects ---------------------------------------------------------------------------------


def redirect(server: PictureServer, path: str, location: str, status: int = 302) -> str:
    """Make ``path`` answer ``status`` with ``Location: location``; return its URL (signed)."""
    server.routes[path] = lambda handler: send(
        handler, b"", status=status, content_type="text/plain", headers={"Location": location}
    )
    return server.url(path, "ex=1&hm=SECRETSIGNATURE")


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("http://127.0.0.1:{inner}/admin", "a loopback address (127.0.0.1)"),
        ("http://localhost:{inner}/admin", "a loopback address"),
        ("http://2130706433:{inner}/admin", "a loopback address (127.0.0.1)"),  # 127.0.0.1, as a number
        ("http://[::1]:{inner}/admin", "a loopback address (::1)"),
        ("http://[::ffff:127.0.0.1]:{inner}/admin", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address (169.254.169.254)"),
        ("http://[fe80::1]/", "a link-local address (fe80::1)"),
        ("http://10.1.2.3/", "a private address (10.1.2.3)"),
        ("http://192.168.0.1/", "a private address (192.168.0.1)"),
        ("http://0.0.0.0:{inner}/", "address (0.0.0.0)"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("gopher://cdn.example/x", "not an http(s) URL"),
        ("http://user:pw@cdn.example/x.png", "a URL with credentials"),
    ],
)
def test_redirect_into_the_private_network_is_not_followed(
    server: PictureServer, session: requests.Session, location: str, problem: str
) -> None:
    """A CDN answer pointing the worker at its own network, or off http(s), is refused before any
    connection: the service it points at (another loopback server here) sees no request."""
    inner = PictureServer()
    try:
        inner.serve("/admin", make_png(4, 4))
        url = redirect(server, "/r.png", location.format(inner=inner.httpd.server_address[1]))
        with pytest.raises(ImageDownloadError, match="not followed") as info:
            fetch(session, url)
        message = str(info.value)
        assert problem in message, message
        assert "SECRETSIGNATURE" not in message and ":pw@" not in message
        assert server.hits["/r.png"] == 1 and sum(inner.hits.values()) == 0
    finally:
        inner.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_followed_where_the_connection_allows_private_hosts(
    server: PictureServer, session: requests.Session, status: int
) -> None:
    """The emulator serves its pictures on loopback: with its connection, loopback redirects are fine,
    relative ones too."""
    body = make_png(6, 6)
    server.serve("/final.png", body)
    url = redirect(server, "/r.png", "/final.png", status=status)
    assert fetch_picture(session, url, max_bytes=10_000, timeout=5, private_redirects=True) == body
    assert server.hits == {"/r.png": 1, "/final.png": 1}


def test_redirects_are_followed_a_few_times_only(server: PictureServer, session: requests.Session) -> None:
    url = redirect(server, "/loop.png", "/loop.png")
    with pytest.raises(ImageDownloadError, match=f"more than {MAX_REDIRECTS} times"):
        fetch_picture(session, url, max_bytes=10_000, timeout=5, private_redirects=True)
    assert server.hits["/loop.png"] == MAX_REDIRECTS + 1


def test_public_host_check() -> None:
    assert not is_public_host("127.0.0.1") and not is_public_host("localhost") and not is_public_host("::1")
    assert not is_public_host("10.0.0.7") and not is_public_host("169.254.169.254")
    assert is_public_host("93.184.215.14") and is_public_host("2606:4700::1111")
    assert redirect_refusal("https://93.184.215.14/a.png") is None
    assert redirect_refusal("https://100.64.0.1/a.png") == "a non-public address (100.64.0.1)"


def test_redact_url() -> None:
    assert redact_url("https://u:p@cdn.example/a/b.png?ex=1&hm=2#frag") == "https://cdn.example/a/b.png"
    assert redact_url("https://cdn.example/a.png") == "https://cdn.example/a.png"


# --- pictures ----------------------------------------------------------------------------------


def test_verify_picture_accepts_real_pictures() -> None:
    assert verify_picture(make_png(5, 7)) == (5, 7, "PNG")
    assert verify_picture(make_png(5, 7, fmt="JPEG")).format == "JPEG"


def test_decompression_bomb_is_refused() -> None:
    # A tiny file that declares a huge canvas: refused from the header, before any decode.
    bomb = Image.new("1", (20000, 20000))
    out = io.BytesIO()
    bomb.save(out, format="PNG")
    assert len(out.getvalue()) < 100_000
    with pytest.raises(ImageDownloadError, match="pixels"):
        verify_picture(out.getvalue())


def quadrant_colours(pictures: list[bytes]) -> list[tuple[int, int, int]]:
    colours = []
    for data in pictures:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            rgb = image.convert("RGB")
            assert rgb.getextrema() == tuple((c, c) for c in rgb.getpixel((0, 0)))  # one colour only
            colours.append(rgb.getpixel((0, 0)))
    return colours


def test_split_order_is_u1_to_u4() -> None:
    pictures = split_grid(make_grid(64, 48))
    assert quadrant_colours(pictures) == list(QUADRANT_COLOURS)
    assert [picture_info(p)[:2] for p in pictures] == [(32, 24)] * 4


def test_split_odd_sizes_keeps_every_pixel() -> None:
    pictures = split_grid(make_grid(65, 49))
    assert quadrant_colours(pictures) == list(QUADRANT_COLOURS)
    assert [picture_info(p)[:2] for p in pictures] == [(32, 24), (33, 24), (32, 25), (33, 25)]


@settings(max_examples=30, deadline=None)
@given(width=st.integers(2, 41), height=st.integers(2, 41))
def test_split_partitions_any_grid(width: int, height: int) -> None:
    sizes = [picture_info(p)[:2] for p in split_grid(make_grid(width, height))]
    assert sum(w * h for w, h in sizes) == width * height
    assert sizes[0][0] + sizes[1][0] == width and sizes[0][1] + sizes[2][1] == height


def test_split_refuses_what_cannot_be_a_grid() -> None:
    with pytest.raises(ImageDownloadError, match="too small"):
        split_grid(make_png(1, 5))
    with pytest.raises(ImageDownloadError, match="not a picture"):
        split_grid(b"<html>")
