"""Picture links: real PNGs, quadrants in U1..U4 order, cutting pictures, upscales, expiry."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import pytest
from lotimage_emulator import render
from PIL import Image

from .helpers import Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator


def _png(client: Client, url: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.format == "PNG"
    return image


def test_grid_is_a_png_with_four_distinct_quadrants_in_order(emu: Emulator) -> None:
    client = Client(emu.url)
    task = client.submit()
    body = client.wait(task)
    grid = _png(Client(emu.url, key=None), body["imageUrl"])  # a CDN link needs no key
    assert grid.size == (256, 256)
    assert render.grid_quadrants(grid, task) == [1, 2, 3, 4]
    colours = [render.dominant_colour(tile) for tile in render.split_grid(grid)]
    assert colours == [render.quadrant_colour(task, n) for n in (1, 2, 3, 4)]
    assert min(render.colour_distance(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :]) > 150


def test_default_grid_size_is_2048_and_upscale_1024(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(grid_size=2048)
    client = Client(emu.url)
    task = client.submit()
    assert _png(client, client.wait(task)["imageUrl"]).size == (2048, 2048)
    assert _png(client, client.wait(client.press(task, "U2"))["imageUrl"]).size == (1024, 1024)


def test_cutting_urls_are_the_four_quadrants(emu: Emulator) -> None:
    client = Client(emu.url)
    task = client.submit(cutting=True)
    body = client.wait(task)
    urls = body["imageUrls"]
    assert len(urls) == 4 and len(set(urls)) == 4 and body["imageUrl"] not in urls
    grid = _png(client, body["imageUrl"])
    for n, url in enumerate(urls, start=1):
        picture = _png(client, url)
        assert picture.size == (128, 128)
        assert render.identify_quadrant(picture, task) == n
        assert render.dominant_colour(picture) == render.dominant_colour(render.split_grid(grid)[n - 1])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_upscale_reproduces_its_parent_quadrant(emu: Emulator, n: int) -> None:
    client = Client(emu.url)
    parent = client.submit()
    client.wait(parent)
    upscale = client.press(parent, f"U{n}")
    picture = _png(client, client.wait(upscale)["imageUrl"])
    assert picture.size == (128, 128)
    assert render.identify_quadrant(picture, parent) == n
    assert render.dominant_colour(picture) == render.quadrant_colour(parent, n)


def test_variation_grid_has_its_own_colours(emu: Emulator) -> None:
    client = Client(emu.url)
    parent = client.submit()
    client.wait(parent)
    child = client.press(parent, "V3")
    grid = _png(client, client.wait(child)["imageUrl"])
    assert render.grid_quadrants(grid, child) == [1, 2, 3, 4]


def test_links_expire_with_403(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(image_ttl_seconds=0.5)
    client = Client(emu.url)
    body = client.wait(client.submit(cutting=True))
    assert client.get(body["imageUrl"]).status_code == 200
    time.sleep(0.6)
    for url in (body["imageUrl"], *body["imageUrls"]):
        expired = client.get(url)
        assert expired.status_code == 403, url
    assert emu.stats()["events"]["image_expired"] == 5


def test_ttl_change_applies_to_issued_links_and_unknown_tokens_are_404(emu: Emulator) -> None:
    client = Client(emu.url)
    body = client.wait(client.submit())
    assert client.get(body["imageUrl"]).status_code == 200
    emu.set_config(image_ttl_seconds=0)
    assert client.get(body["imageUrl"]).status_code == 403
    assert client.get(emu.url + "/_emulator/images/AAAAAAAAAAAAAAAAAAAAAAAA.png").status_code == 404
    assert client.get(emu.url + "/_emulator/images/..%2Fetc.png").status_code == 404


def test_pictures_are_cached(emu: Emulator) -> None:
    client = Client(emu.url)
    body = client.wait(client.submit())
    first = client.get(body["imageUrl"]).content
    assert client.get(body["imageUrl"]).content == first
    assert emu.stats()["renders"] == 1


def test_render_helpers() -> None:
    colours = [render.quadrant_colour("some-task", n) for n in (1, 2, 3, 4)]
    assert len(set(colours)) == 4
    assert render.quadrant_colour("some-task", 1) != render.quadrant_colour("other-task", 1)
    tile = render.draw_tile("some-task", 2, 64, "caption")
    assert render.identify_quadrant(tile, "some-task") == 2
    assert render.identify_quadrant(render.to_png(tile), "some-task") == 2
    assert render.identify_quadrant(Image.new("RGB", (10, 10), (128, 128, 128)), "some-task") is None
    with pytest.raises(ValueError):
        render.quadrant_colour("x", 5)
    preview = render.draw_preview("some-task", 256)
    assert preview.size == (32, 32)
    cache = render.PngCache(max_entries=2)
    for key in range(3):
        cache.get_or_render((key,), lambda: b"png")
    assert cache.renders == 3
    cache.get_or_render((2,), lambda: b"other")
    assert cache.renders == 3


def test_timeline_brackets_submissions_and_pictures_served(emu: Emulator) -> None:
    client = Client(emu.url)
    before = time.time()
    assert emu.stats()["timeline"] == {}
    first = client.submit()
    second = client.submit("A lighthouse made of glass at dawn")
    url = client.wait(second)["imageUrl"]
    client.wait(first)
    _png(client, url)
    after = time.time()
    stats = emu.stats()
    timeline = stats["timeline"]
    assert before <= timeline["first_submit"] < timeline["last_submit"] <= timeline["first_image"] <= after
    assert timeline["first_image"] == timeline["last_image"]
    assert stats["events"]["images_served"] == 1
    assert client.get(f"{emu.url}/_emulator/images/no-such-picture.png").status_code != 200
    assert emu.stats()["events"]["images_served"] == 1, "a missing picture is not a picture served"


def test_a_progress_read_after_expiry_hands_out_fresh_links(make_emulator: Callable[..., Emulator]) -> None:
    """A client renews expired links by reading the task again: same pictures, new links."""
    emu = make_emulator(image_ttl_seconds=0.5)
    client = Client(emu.url)
    task = client.submit(cutting=True)
    body = client.wait(task)
    old = [body["imageUrl"], *body["imageUrls"]]
    pictures = [client.get(url).content for url in old]
    assert client.progress(task).json() == body, "links still alive are handed out unchanged"
    time.sleep(0.6)
    assert [client.get(url).status_code for url in old] == [403] * 5
    renewed = client.progress(task).json()
    fresh = [renewed["imageUrl"], *renewed["imageUrls"]]
    assert not set(fresh) & set(old) and len(set(fresh)) == 5
    assert [client.get(url).content for url in fresh] == pictures, "the same pictures, in the same order"
    assert [client.get(url).status_code for url in old] == [403] * 5, "an expired link stays expired"
    assert {k: v for k, v in renewed.items() if k not in ("imageUrl", "imageUrls")} == {
        k: v for k, v in body.items() if k not in ("imageUrl", "imageUrls")
    }
    assert client.progress(task).json() == renewed, "renewed once, not on every read"
    assert emu.stats()["events"]["links_renewed"] == 5
    upscale = client.press(task, "U3")
    link = client.wait(upscale)["imageUrl"]
    time.sleep(0.6)
    assert client.get(link).status_code == 403
    again = client.progress(upscale).json()["imageUrl"]
    assert again != link and client.get(again).status_code == 200
