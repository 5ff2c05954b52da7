"""Pictures the emulator serves: PNGs that let a test tell which quadrant is which.

A grid is 2x2 tiles; tile ``n`` (1..4 = U1..U4 = top-left, top-right, bottom-left, bottom-right)
is filled with :func:`quadrant_colour` ``(task_id, n)`` and carries a big label ``n`` plus a small
caption. The four hues of a grid are 90 degrees apart, so they never look alike. An upscale of
``U<n>`` repeats its parent's tile ``n`` (same colour, same label) at ``grid_size // 2``, so a test
can check that the right quadrant was upscaled::

    from lotimage_emulator import render
    image = PIL.Image.open(io.BytesIO(png_bytes))
    assert render.identify_quadrant(image, parent_task_id) == 3       # an upscale of U3
    assert render.grid_quadrants(grid_image, task_id) == [1, 2, 3, 4]  # a grid in order

Drawing is deterministic (colours derive from the task id), so pictures are rendered on demand
and only a bounded cache of PNG bytes is kept.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

if TYPE_CHECKING:
    from collections.abc import Callable

RGB = tuple[int, int, int]
#: Quadrant number -> (column, row) in the grid.
QUADRANT_POSITIONS: dict[int, tuple[int, int]] = {1: (0, 0), 2: (1, 0), 3: (0, 1), 4: (1, 1)}


def quadrant_colour(task_id: str, n: int) -> RGB:
    """Return the solid background colour of quadrant ``n`` (1..4) of grid ``task_id``.

    The base hue comes from a hash of the id (so two grids differ) and the four quadrants are
    spread 90 degrees apart (so the quadrants of one grid are far apart).
    """
    if n not in QUADRANT_POSITIONS:
        raise ValueError(f"quadrant must be 1..4, not {n!r}")
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    base = int.from_bytes(digest[:2], "big") / 65536.0
    hue = (base + (n - 1) * 0.25) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.8, 0.85)
    return (round(red * 255), round(green * 255), round(blue * 255))


def colour_distance(a: RGB, b: RGB) -> float:
    """Euclidean distance in RGB; enough to tell the far-apart quadrant hues apart."""
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def dominant_colour(image: Image.Image) -> RGB:
    """Return the most frequent colour of ``image``: the tile background, since labels cover little."""
    sample = image.convert("RGB").resize((96, 96), Image.Resampling.NEAREST)
    colours: list[tuple[int, Any]] = list(sample.getcolors(maxcolors=96 * 96) or [])
    colour = max(colours, key=lambda item: item[0])[1]
    return (int(colour[0]), int(colour[1]), int(colour[2]))


def identify_quadrant(image: Image.Image | bytes, task_id: str, *, tolerance: float = 30.0) -> int | None:
    """Which quadrant (1..4) of grid ``task_id`` this picture shows, or ``None`` if none fits.

    Works on a single tile, an upscale or a cutting picture (PNG bytes or a PIL image). PNGs are
    lossless, so the match is near exact; ``tolerance`` only allows for re-encoded copies.
    """
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    colour = dominant_colour(image)
    best = min(range(1, 5), key=lambda n: colour_distance(colour, quadrant_colour(task_id, n)))
    return best if colour_distance(colour, quadrant_colour(task_id, best)) <= tolerance else None


def split_grid(image: Image.Image) -> list[Image.Image]:
    """Cut a grid into its four tiles, in U1..U4 order."""
    width, height = image.size
    half_w, half_h = width // 2, height // 2
    tiles = []
    for n in range(1, 5):
        col, row = QUADRANT_POSITIONS[n]
        tiles.append(image.crop((col * half_w, row * half_h, (col + 1) * half_w, (row + 1) * half_h)))
    return tiles


def grid_quadrants(image: Image.Image | bytes, task_id: str) -> list[int | None]:
    """Identify each tile of a grid; a correct grid of ``task_id`` gives ``[1, 2, 3, 4]``."""
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    return [identify_quadrant(tile, task_id) for tile in split_grid(image)]


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font: no font file has to ship with the package."""
    try:
        return ImageFont.load_default(size=max(8, size))
    except (OSError, TypeError, ValueError):  # Pillow without FreeType: small bitmap font
        return ImageFont.load_default()


def _ink(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background``."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_tile(task_id: str, n: int, size: int, caption: str = "") -> Image.Image:
    """One square tile: solid quadrant colour, a big centred ``n`` and a small caption."""
    background = quadrant_colour(task_id, n)
    tile = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(tile)
    ink = _ink(background)
    draw.text((size / 2, size / 2), str(n), fill=ink, font=_font(size // 3), anchor="mm")
    small = _font(max(8, size // 24))
    margin = max(2, size // 40)
    for line_no, line in enumerate(caption.splitlines()[:3]):
        draw.text((margin, margin + line_no * (size // 20 + 2)), line[:60], fill=ink, font=small)
    return tile


def draw_grid(task_id: str, size: int, prompt: str = "") -> Image.Image:
    """Draw the 2x2 grid of a task: tiles 1..4 at top-left, top-right, bottom-left, bottom-right."""
    half = size // 2
    grid = Image.new("RGB", (half * 2, half * 2))
    for n in range(1, 5):
        col, row = QUADRANT_POSITIONS[n]
        grid.paste(draw_tile(task_id, n, half, f"{prompt}\n{task_id}"), (col * half, row * half))
    return grid


def draw_upscale(parent_id: str, n: int, size: int, prompt: str = "", task_id: str = "") -> Image.Image:
    """Draw an upscale of ``U<n>``: the parent's tile ``n`` redrawn alone at ``size``."""
    return draw_tile(parent_id, n, size, f"{prompt}\nU{n} of {parent_id}\n{task_id}")


def draw_preview(task_id: str, size: int) -> Image.Image:
    """Draw a blurry low-resolution grid, as Midjourney shows while a job is running."""
    small = max(8, size // 8)
    return draw_grid(task_id, small).filter(ImageFilter.GaussianBlur(max(1, small // 32)))


def to_png(image: Image.Image, compress_level: int = 1) -> bytes:
    """PNG bytes; a low compress level keeps a 2048 px grid fast to produce."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


class PngCache:
    """A small thread-safe LRU of rendered PNGs, bounded by entry count and total bytes.

    Renders may run in worker threads; a per-key lock keeps two requests for the same picture
    from rendering it twice.
    """

    def __init__(self, max_entries: int = 64, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._key_locks: dict[tuple[object, ...], threading.Lock] = {}
        self._bytes = 0
        self.renders = 0

    def get_or_render(self, key: tuple[object, ...], render: Callable[[], bytes]) -> bytes:
        """Return the cached PNG for ``key`` or render, store and return it."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            try:
                data = render()
            finally:
                with self._lock:
                    self._key_locks.pop(key, None)
            with self._lock:
                self.renders += 1
                self._entries[key] = data
                self._bytes += len(data)
                while self._entries and (
                    len(self._entries) > self.max_entries or self._bytes > self.max_bytes
                ):
                    _old_key, old = self._entries.popitem(last=False)
                    self._bytes -= len(old)
            return data

    def clear(self) -> None:
        """Forget every picture (they are cheap to redraw)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
