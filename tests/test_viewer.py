"""The browser viewer (issue 15), driven in headless Chromium by Playwright: what the page
shows is checked against the store, pixel by pixel on screenshots where it is an image."""

import io
import re
import shutil
from urllib.parse import urlsplit

import numpy as np
import pytest
from bokeh.palettes import RdBu11, Viridis256
from PIL import Image
from playwright.sync_api import sync_playwright

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.datasets import make_run
from uedflow.io.runs import open_run
from uedflow.pipeline import open_reduced, reduce, write_reduced
from uedflow.viewer import serve

SHAPE = (96, 96)
MODEL = "Bokeh.documents[0].get_model_by_name({!r})"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    make_run(root / "run", shape=SHAPE, n_scans=2, kind="polycrystalline", seed=1)
    write_reduced(reduce(open_run(root / "run")), root / "reduced.zarr")
    return root / "reduced.zarr"


@pytest.fixture(scope="module")
def ds(store):
    return open_reduced(store)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "the viewer's tests need Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def viewer(store):
    with serve(store) as server:
        yield server


def open_page(browser, url, ready="frame"):
    """A new page (a new session) on ``url``, once the model ``ready`` has data; the list of
    every URL it requests."""
    page = browser.new_page(viewport={"width": 1300, "height": 1100}, accept_downloads=True)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_function(f"window.Bokeh && Bokeh.documents.length && {MODEL.format(ready)} "
                           f"&& {MODEL.format(ready)}.data.image.length", timeout=20000)
    return page, requests


def frame_box(page, name):
    """The plot frame of a figure: left, top, width, height (page px) and its x and y
    ranges."""
    return page.evaluate("""(name) => {
        const model = Bokeh.documents[0].get_model_by_name(name);
        const view = Bokeh.index.find_one(model);
        const canvas = view.canvas_view.el.getBoundingClientRect();
        const f = view.frame.bbox;
        return {left: canvas.x + f.x, top: canvas.y + f.y, width: f.width, height: f.height,
                x: [model.x_range.start, model.x_range.end],
                y: [model.y_range.start, model.y_range.end]};
    }""", name)


def to_page(box, x, y):
    """Page coordinates of the data point ``(x, y)`` of a figure's frame ``box`` (a range's
    start is on the left, or at the bottom)."""
    (x0, x1), (y0, y1) = box["x"], box["y"]
    return (box["left"] + (x - x0) / (x1 - x0) * box["width"],
            box["top"] + (y1 - y) / (y1 - y0) * box["height"])


def screenshot(page):
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=float)


def palette_index(pixels, palette):
    """Index of the nearest colour of ``palette`` for every RGB pixel, and the distance."""
    colors = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in palette], float)
    distance = np.linalg.norm(pixels[..., None, :] - colors, axis=-1)
    return distance.argmin(-1), distance.min(-1)


def sample(shot, box, rows, cols):
    """The screenshot's colours at the middles of the data pixels ``(rows, cols)``."""
    xs, ys = to_page(box, cols + 0.5, rows + 0.5)
    return shot[np.round(ys).astype(int), np.round(xs).astype(int)]


def mapper_limits(page):
    return page.evaluate(f"""() => {{
        const m = {MODEL.format("pattern")}.renderers.find(r => r.glyph.type == "Image")
            .glyph.color_mapper;
        return [m.low, m.high];
    }}""")


def frame_values(page):
    return np.array(page.evaluate(f"Array.from({MODEL.format('frame')}.data.image[0])"))


def test_page_is_local_and_shows_the_pattern_and_the_map(browser, viewer, ds):
    page, requests = open_page(browser, viewer.url)
    shot = screenshot(page)
    hosts = {urlsplit(url).netloc for url in requests}
    assert hosts == {f"127.0.0.1:{viewer.port}"}, requests
    assert any(re.search(r"/static/js/bokeh.*\.js", url) for url in requests), requests

    # the pattern: every data pixel in the colour of its counts (viridis between the limits)
    rows, cols = np.indices(SHAPE).reshape(2, -1)
    index, distance = palette_index(sample(shot, frame_box(page, "pattern"), rows, cols),
                                    Viridis256)
    low, high = mapper_limits(page)
    values = ds["diffraction"].isel(delay=0).values.ravel()
    expected = np.clip(((values - low) / (high - low) * 256).astype(int), 0, 255)
    assert np.median(distance) < 10
    assert np.mean(np.abs(index - expected) <= 3) > 0.95
    assert np.ptp(expected) > 200  # the test is not of a flat image

    # the map: each (delay, radius) cell in its colour of the diverging palette
    change = ds["radial_change"].values
    box = frame_box(page, "map")
    radius = ds["radius"].values
    d, r = np.indices(change.shape).reshape(2, -1)
    xs, ys = to_page(box, radius[r] + 0.5, d + 0.5)
    pixels = shot[np.round(ys).astype(int), np.round(xs).astype(int)]
    index, distance = palette_index(pixels, RdBu11[::-1])
    valid = np.isfinite(change.ravel())
    limit = np.nanpercentile(np.abs(change), 99.5)
    expected = np.clip(((change.ravel() + limit) / (2 * limit) * 11).astype(int), 0, 10)
    assert np.median(distance[valid]) < 10
    assert np.mean(np.abs(index - expected)[valid] <= 1) > 0.9
    assert len(set(index[valid])) >= 6
    page.close()


def test_the_slider_changes_the_pattern(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    box = frame_box(page, "pattern")
    before = screenshot(page)
    page.locator(".noUi-handle").focus()
    for _ in range(8):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"{MODEL.format('delay')}.title.includes('(9 of 12)')")
    page.wait_for_timeout(300)
    after = screenshot(page)
    shown = frame_values(page).reshape(SHAPE)
    np.testing.assert_array_equal(shown, ds["diffraction"].isel(delay=8).values)
    rows, cols = np.indices(SHAPE).reshape(2, -1)
    changed = np.abs(sample(after, box, rows, cols) - sample(before, box, rows, cols))
    assert np.mean(changed.max(-1) > 8) > 0.1
    page.close()


def drag(page, box, start, end):
    """Drag the mouse between the data points ``start`` and ``end`` ((x, y)) of a frame."""
    page.mouse.move(*to_page(box, *start))
    page.mouse.down()
    page.mouse.move(*to_page(box, *end), steps=8)
    page.mouse.up()


def regions(page):
    return page.evaluate(f"{MODEL.format('regions')}.data.region")


def trace(page, number):
    return page.evaluate(f"""() => {{
        const data = {MODEL.format("trace-" + str(number))}.data;
        return [Array.from(data.change), Array.from(data.error)];
    }}""")


def test_a_rectangle_drawn_on_the_pattern_gives_its_time_series(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    drag(page, frame_box(page, "pattern"), (62.3, 60.2), (80.4, 71.6))
    page.wait_for_function(f"{MODEL.format('regions')}.data.region.length == 1")
    label, = regions(page)
    rect = tuple(int(v) for v in re.fullmatch(r"rect rows (\d+):(\d+), cols (\d+):(\d+)",
                                              label).groups())
    assert np.allclose(rect, (60, 72, 62, 80), atol=1), rect
    expected = ds.ued.time_series(rect=rect, change=True).compute()
    change, error = trace(page, 1)
    np.testing.assert_allclose(change, expected["change"].values, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(error, expected["change_error"].values, rtol=1e-6)
    assert np.ptp(change) > 0
    page.close()
