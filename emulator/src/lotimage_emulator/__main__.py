"""``lotimage-emulator`` / ``python -m lotimage_emulator``: run the emulator.

Prints exactly one line, ``LotImage emulator listening on http://HOST:PORT`` (the real port
when ``--port 0``; ``https://`` with ``--tls-cert``/``--tls-key``), once it accepts connections, so
scripts can wait for it, then serves until SIGTERM or SIGINT. Keys are never printed or logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


KEYS_ENV = "LOTIMAGE_EMULATOR_KEYS"


def build_parser() -> argparse.ArgumentParser:
    """Build the command line; defaults mirror the real service except the time scale."""
    parser = argparse.ArgumentParser(
        prog="lotimage-emulator", description="Run the offline LotImage emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    parser.add_argument(
        "--key",
        action="append",
        dest="keys",
        default=None,
        metavar="KEY",
        help="accepted API key (repeatable; also read, comma-separated, from $LOTIMAGE_EMULATOR_KEYS, "
        "which keeps keys off the process list; none given: any non-empty key)",
    )
    parser.add_argument(
        "--rate-limit", type=float, default=3.0, help="calls per second per key, 0 to disable (default 3)"
    )
    parser.add_argument("--daily-quota", type=int, default=None, help="calls per UTC day per key")
    parser.add_argument("--max-running", type=int, default=3, help="tasks a key runs at once (default 3)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplier of task durations (0.02: an imagine takes ~1 s)",
    )
    parser.add_argument("--grid-size", type=int, default=2048, help="grid picture side in px (default 2048)")
    parser.add_argument(
        "--image-ttl", type=float, default=86400.0, help="seconds a picture link works (default 86400)"
    )
    parser.add_argument(
        "--mirror-http-status",
        action="store_true",
        help="answer errors with the HTTP status equal to the body status",
    )
    parser.add_argument(
        "--banned-word",
        action="append",
        dest="banned_words",
        default=None,
        metavar="WORD",
        help="word that makes a prompt banned (repeatable; default nsfw)",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="PATH",
        help="PEM certificate (chain) to serve HTTPS, e.g. signed by a private test CA; needs --tls-key",
    )
    parser.add_argument("--tls-key", default=None, metavar="PATH", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    )
    return parser


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Build a server context from PEM files, so clients can be tested against a private CA over HTTPS.

    Raises ``OSError`` for unreadable files and ``ssl.SSLError`` for a bad or mismatched pair.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    env_keys = [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
    args.keys = (args.keys or []) + env_keys or None
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lotimage_emulator import Emulator, EmulatorConfig

    try:
        config = EmulatorConfig(
            host=args.host,
            port=args.port,
            keys=tuple(args.keys) if args.keys else None,
            rate_limit=args.rate_limit or None,
            daily_quota=args.daily_quota,
            max_running=args.max_running,
            time_scale=args.time_scale,
            grid_size=args.grid_size,
            image_ttl_seconds=args.image_ttl,
            mirror_http_status=args.mirror_http_status,
            banned_words=tuple(args.banned_words) if args.banned_words else ("nsfw",),
        )
    except ValueError as exc:
        print(f"lotimage-emulator: {exc}", file=sys.stderr)
        return 2
    try:
        context = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except OSError as exc:  # ssl.SSLError is an OSError; neither names the file
        print(f"lotimage-emulator: cannot load {args.tls_cert} / {args.tls_key}: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    emulator = Emulator(config, ssl_context=context)
    try:
        emulator.start()
    except OSError as exc:
        print(f"lotimage-emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"LotImage emulator listening on {emulator.scheme}://{shown}:{emulator.port}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logging.getLogger("lotimage_emulator").info("LotImage emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
