"""Picture handling for :class:`~airflow_provider_lotimage.operators.save_images.SaveImagesOperator`.

Kept free of Airflow so it can be tested (and reused by the emulator's tests) without a configured
Airflow. Three jobs:

* :func:`fetch_picture` downloads one picture with a hard size cap and a total deadline. Both are
  enforced while streaming, because a CDN link is untrusted input: a wrong or hostile answer must
  not fill the worker's memory or hang the task. Redirects are followed only to public http(s)
  hosts (:func:`redirect_refusal`), so a CDN answer cannot point the worker at its own network.
* :func:`verify_picture` / :func:`picture_info` make sure the bytes are a real, complete picture of
  an expected format (an expired link may answer 200 with an HTML page).
* :func:`split_grid` cuts a Midjourney 2x2 grid into its four pictures, in button order U1..U4.

Signed CDN links carry their signature in the query string, so every message here names a URL
through :func:`~airflow_provider_lotimage.client.redaction.redact_url` only.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
import time
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
import urllib3.util
from PIL import Image

from airflow_provider_lotimage.client.redaction import redact_url, scrub
from airflow_provider_lotimage.exceptions import ImageDownloadError, LotImageInputError
from airflow_provider_lotimage.storage.layout import PICTURE_FORMATS

if TYPE_CHECKING:
    from collections.abc import Callable

#: A grid is about 2048² (~8 MB as PNG); 50 MiB leaves room for bigger upscales, not for abuse.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: Seconds for one whole download (connect, headers and body together).
DEFAULT_TIMEOUT = 120.0
#: Pixel cap checked from the header before decoding: ten 2048² grids. Protects against
#: decompression bombs, which a byte cap alone does not (a tiny PNG can declare a huge canvas).
MAX_PIXELS = 10 * 2048 * 2048
#: HTTP answers of an expired signed link.
EXPIRED_LINK_STATUSES = frozenset({403, 410})

#: Redirects one download follows at most: a CDN uses one or two.
MAX_REDIRECTS = 5

_CHUNK = 64 * 1024
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PictureInfo(NamedTuple):
    """Size and Pillow format name (``"PNG"``, ``"JPEG"``...) of a picture."""

    width: int
    height: int
    format: str


def picture_info(data: bytes) -> PictureInfo:
    """Read width, height and format from the header only (cheap; no full decode)."""
    with open_picture(data) as image:
        return PictureInfo(image.width, image.height, str(image.format))


def verify_picture(data: bytes, *, source: str = "data") -> PictureInfo:
    """Check that ``data`` is a complete picture of an accepted format; return its info.

    ``verify()`` checks the structure (PNG chunk CRCs...), and a full ``load()`` catches a body that
    was cut short, which ``verify()`` alone lets through for some formats.
    """
    with open_picture(data, source=source) as image:
        info = PictureInfo(image.width, image.height, str(image.format))
        try:
            image.verify()
        except Exception as exc:
            raise ImageDownloadError(f"{source} is not a picture: {scrub(exc)}") from None
    with open_picture(data, source=source) as image:
        try:
            image.load()
        except Exception as exc:
            raise ImageDownloadError(f"{source} is not a complete picture: {scrub(exc)}") from None
    return info


def open_picture(data: bytes, *, source: str = "data", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``data`` with Pillow, restricted to :data:`PICTURE_FORMATS` and ``max_pixels``.

    The one check before Pillow decodes anything this provider did not make: the downloads, the
    grid split and the gallery's thumbnails all open pictures here. The size is read from the
    header, so a small file that declares a huge canvas (a decompression bomb) is refused before
    any decode.

    :raises ImageDownloadError: not a picture of an accepted format, or too many pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(PICTURE_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDownloadError(f"{source} declares too many pixels") from None
    except Exception as exc:  # Pillow raises UnidentifiedImageError, SyntaxError, OSError...
        raise ImageDownloadError(f"{source} is not a picture ({type(exc).__name__})") from None
    if image.width * image.height > max_pixels:
        image.close()
        raise ImageDownloadError(
            f"{source} is {image.width}x{image.height}, more than the {max_pixels} pixels accepted"
        )
    return image


def fetch_picture(
    session: requests.Session,
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    sink: Callable[[bytes], object] | None = None,
    private_redirects: bool = False,
) -> bytes:
    """Download one picture and return its verified bytes.

    ``timeout`` bounds the whole download, not just each socket wait, so a server that drips bytes
    cannot hold the task. ``max_bytes`` is checked against ``Content-Length`` before the body is
    read and again while streaming (the header may be absent or wrong). HTTP 403/410 are reported as
    an expired link: Discord CDN links are signed for about 24 hours.

    :param sink: called with each piece of the body as it arrives (after the size check), e.g. the
        ``write`` of a temporary file, so a picture is written while it downloads. What it raises
        is raised unchanged (an ``OSError`` of the sink is a storage failure, not a download one).
        The bytes are verified only once the body is complete: whatever the sink wrote must not be
        published before this function has returned.
    :param private_redirects: also follow redirects to loopback, link-local and private addresses
        (when the LotImage connection's own host is on one, as the emulator is); see
        :func:`redirect_refusal`.
    :raises ImageDownloadError: on any failure; the message never contains the query string.
    """
    if max_bytes <= 0:
        raise LotImageInputError(f"max_bytes must be positive, got {max_bytes!r}")
    if timeout <= 0:
        raise LotImageInputError(f"timeout must be positive, got {timeout!r}")
    shown = redact_url(url)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ImageDownloadError(f"picture URL {shown!r} is not an http(s) URL")
    deadline = time.monotonic() + timeout
    try:
        response = _get(session, url, shown, timeout=timeout, deadline=deadline, private_ok=private_redirects)
        with response:
            _raise_for_status(response, shown)
            _check_declared_length(response, shown, max_bytes)
            data = _read_body(
                response, shown, max_bytes=max_bytes, deadline=deadline, timeout=timeout, sink=sink
            )
    except _SinkFailed as failed:  # the sink's own error, with its own cause (not this wrapper)
        raise failed.error from failed.error.__cause__
    except ImageDownloadError:
        raise
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        raise ImageDownloadError(f"picture {shown} did not arrive within {timeout:g} s") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        # ``from None``: the chained exception would print the signed URL in the task log.
        raise ImageDownloadError(
            f"could not download picture {shown}: {type(exc).__name__}: {scrub(exc)}"
        ) from None
    verify_picture(data, source=f"the body of {shown}")
    return data


def _get(
    session: requests.Session, url: str, shown: str, *, timeout: float, deadline: float, private_ok: bool
) -> requests.Response:
    """GET ``url`` streaming, following at most :data:`MAX_REDIRECTS` redirects that pass the policy.

    Redirects are followed here rather than by ``requests``, so the URL that is checked is the URL
    that is requested: each target is prepared first, and its host read as ``urllib3`` will read it.
    """
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if time.monotonic() > deadline:
            raise ImageDownloadError(f"picture {shown} did not arrive within {timeout:g} s")
        response = session.get(
            current, stream=True, timeout=timeout, headers={"Accept": "image/*"}, allow_redirects=False
        )
        if not response.is_redirect:
            return response
        location = response.headers["Location"]
        response.close()
        current = requests.Request("GET", urljoin(current, location)).prepare().url or ""
        problem = redirect_refusal(current, private_ok=private_ok)
        if problem is not None:
            raise ImageDownloadError(
                f"picture {shown} redirects to {redact_url(current)}, which is {problem}; not followed "
                "(a picture download follows redirects to public http(s) hosts only)"
            )
    raise ImageDownloadError(f"picture {shown} redirects more than {MAX_REDIRECTS} times; not followed")


def redirect_refusal(url: str, *, private_ok: bool = False) -> str | None:
    """Say why a download must not follow a redirect to ``url`` (None: it may).

    Only http(s) URLs without credentials are followed, and only to hosts whose every address is
    public: loopback, link-local (cloud metadata services live at 169.254.169.254), private,
    multicast and reserved addresses are refused, private ones too because a CDN in the internet
    has no reason to send a worker into its own network, where its databases and admin pages are.
    ``private_ok`` lifts the address rule when the LotImage connection's own host is not public
    (the emulator, an on-premises gateway): pictures then legitimately come from such a network.

    The host is resolved here and again when connected to: a DNS name that answers a public
    address now and a private one a moment later (DNS rebinding) is not caught. A name this
    machine cannot resolve is left to the request (or its proxy) to resolve, or fail.
    """
    parts = urllib3.util.parse_url(url)
    if parts.scheme not in ("http", "https") or not parts.host:
        return "not an http(s) URL"
    if parts.auth:
        return "a URL with credentials"
    if private_ok:
        return None
    for address in _addresses(parts.host):
        kind = _non_public_kind(address)
        if kind is not None:
            return f"a {kind} address ({address})"
    return None


def is_public_host(host: str | None) -> bool:
    """Return whether every address ``host`` resolves to is public (True if it does not resolve)."""
    return not host or all(_non_public_kind(address) is None for address in _addresses(host))


def _addresses(host: str) -> list[_IPAddress]:
    """Return the addresses of ``host``: itself if it is one, else what the resolver answers."""
    try:
        return [ipaddress.ip_address(host.strip("[]").split("%")[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _non_public_kind(address: _IPAddress) -> str | None:
    """Name the kind of a non-public address (None for a public one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


def _raise_for_status(response: requests.Response, shown: str) -> None:
    status = response.status_code
    if status in EXPIRED_LINK_STATUSES:
        raise ImageDownloadError(
            f"picture link {shown} answered HTTP {status}: the signed link has probably expired "
            "(they last about 24 h). Fetch the task again (task/progress) for fresh links and save "
            "the pictures within ~24 h of the task finishing.",
            http_status=status,
        )
    if not 200 <= status < 300:
        raise ImageDownloadError(f"picture link {shown} answered HTTP {status}", http_status=status)


def _check_declared_length(response: requests.Response, shown: str, max_bytes: int) -> None:
    # With a Content-Encoding the header counts encoded bytes; the streaming check covers that case.
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return
    declared = response.headers.get("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise ImageDownloadError(f"picture {shown} is {int(declared)} bytes, more than max_bytes={max_bytes}")


class _SinkFailed(Exception):
    """Carries an error of the caller's sink past the download's own error handling."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _read_body(
    response: requests.Response,
    shown: str,
    *,
    max_bytes: int,
    deadline: float,
    timeout: float,
    sink: Callable[[bytes], object] | None = None,
) -> bytes:
    """Read the (decoded) body in small reads, checking the size cap and the deadline after each.

    ``read1`` returns as soon as some bytes are there, and the socket's wait is shortened to the
    time left, so the deadline holds even against a server that sends one byte at a time. Each
    piece within the cap is handed to ``sink``, if any.
    """
    raw = response.raw
    read: Callable[..., bytes] = getattr(raw, "read1", None) or raw.read
    buffer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ImageDownloadError(f"picture {shown} did not arrive within {timeout:g} s")
        _limit_socket_wait(raw, remaining)
        chunk = read(_CHUNK, decode_content=True)
        if not chunk:
            return bytes(buffer)
        buffer += chunk
        if len(buffer) > max_bytes:
            raise ImageDownloadError(f"picture {shown} is larger than max_bytes={max_bytes}")
        if sink is not None:
            try:
                sink(chunk)
            except Exception as exc:
                raise _SinkFailed(exc) from exc


def _limit_socket_wait(raw: Any, seconds: float) -> None:
    """Best effort: make the next socket read give up when the deadline passes."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # socket already closed: the read will report it
            sock.settimeout(max(seconds, 0.001))


def split_grid(png: bytes) -> list[bytes]:
    """Cut a 2x2 grid into four PNGs: top-left, top-right, bottom-left, bottom-right (U1..U4).

    For an odd width or height the extra column/row goes to the right/bottom pictures, so every
    pixel of the grid lands in exactly one picture (Midjourney grids have no gutter to drop).
    """
    with open_picture(png, source="grid") as image:
        image.load()
        width, height = image.size
        if width < 2 or height < 2:
            raise ImageDownloadError(f"grid is {width}x{height}: too small to split into 2x2")
        mid_x, mid_y = width // 2, height // 2
        boxes = (
            (0, 0, mid_x, mid_y),
            (mid_x, 0, width, mid_y),
            (0, mid_y, mid_x, height),
            (mid_x, mid_y, width, height),
        )
        pictures = []
        for box in boxes:
            out = io.BytesIO()
            image.crop(box).save(out, format="PNG")
            pictures.append(out.getvalue())
    return pictures
