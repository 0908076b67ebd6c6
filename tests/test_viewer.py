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
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.datasets import make_run
from uedflow.io.runs import open_run
from uedflow.pipeline import open_reduced, reduce, write_reduced
from uedflow.viewer import serve

SHAPE = (96, 96)
TAU = 2.0  # the time constant of the run's diffuse background (make_run)
MODEL = "Bokeh.documents[0].get_model_by_name({!r})"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    make_run(root / "run", shape=SHAPE, n_scans=3, kind="polycrystalline", seed=1, tau=TAU,
             diffuse_increase=0.5)
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


def wait(page, condition):
    """Wait for a JavaScript ``condition``; on a timeout, fail with the page's message."""
    try:
        page.wait_for_function(condition, timeout=10000)
    except PlaywrightTimeout:
        status = page.evaluate(f"{MODEL.format('status')}.text")
        pytest.fail(f"timed out waiting for {condition}; the page says: {status}")


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


def shown_indices(page, box):
    """The Viridis256 index of every data pixel in a screenshot of the pattern, and the one
    expected from ``values`` and the page's colour limits."""
    rows, cols = np.indices(SHAPE).reshape(2, -1)
    index, distance = palette_index(sample(screenshot(page), box, rows, cols), Viridis256)
    assert np.median(distance) < 10
    return index


def expected_indices(page, values):
    low, high = mapper_limits(page)
    return np.clip(((values.ravel() - low) / (high - low) * 256).astype(int), 0, 255)


def test_the_slider_changes_the_pattern(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    box = frame_box(page, "pattern")
    before = shown_indices(page, box)
    page.locator(".noUi-handle").focus()
    for _ in range(8):
        page.keyboard.press("ArrowRight")
    wait(page, f"{MODEL.format('delay')}.title.includes('(9 of 12)')")
    page.wait_for_timeout(300)
    after = shown_indices(page, box)
    frame = ds["diffraction"].isel(delay=8).values
    np.testing.assert_array_equal(frame_values(page).reshape(SHAPE), frame)
    assert np.mean(np.abs(after - expected_indices(page, frame)) <= 3) > 0.95
    assert np.sum(np.abs(after - before) > 3) > 200   # the image changed where it should
    page.close()


def drag(page, name, start, end):
    """Drag the mouse between the data points ``start`` and ``end`` ((x, y)) of a figure's
    frame, once the layout is still."""
    box = None
    for _ in range(20):
        page.wait_for_timeout(100)
        box, previous = frame_box(page, name), box
        if box == previous:
            break
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
    drag(page, "pattern", (62.3, 60.2), (80.4, 71.6))
    wait(page, f"{MODEL.format('regions')}.data.region.length == 1")
    label, = regions(page)
    rect = tuple(int(v) for v in re.fullmatch(r"rect rows (\d+):(\d+), cols (\d+):(\d+)",
                                              label).groups())
    assert np.allclose(rect, (60, 72, 62, 80), atol=1), rect
    expected = ds.ued.time_series(rect=rect, change=True).compute()
    change, error = trace(page, 1)
    np.testing.assert_allclose(change, expected["change"].values, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(error, expected["change_error"].values, rtol=1e-6)
    assert np.isfinite(error).all() and np.ptp(change) > 0
    page.close()


def click(page, label):
    page.get_by_role("button", name=label, exact=True).click()


def test_a_fit_of_a_ring_finds_the_time_constant_of_the_run(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    page.locator("select").select_option("ring")
    row, col = ds["center"].values
    # a narrow box from 40 to 46 px left of the centre: the ring of those radii
    drag(page, "pattern", (col - 39.5, row - 0.5), (col - 45.5, row + 1.5))
    wait(page, f"{MODEL.format('regions')}.data.region.length == 1")
    label, = regions(page)
    found = re.fullmatch(r"ring \(([\d.]+), ([\d.]+)\) r ([\d.]+) to ([\d.]+)", label)
    centre, radii = [float(v) for v in found.groups()[:2]], [float(v) for v in found.groups()[2:]]
    np.testing.assert_allclose(centre, (row, col), atol=0.01)
    np.testing.assert_allclose(radii, (40, 46), atol=0.3)
    click(page, "fit")
    wait(page, f"{MODEL.format('fit_result')}.text.includes('tau')")
    text = page.evaluate(f"{MODEL.format('fit_result')}.text")
    tau, error = (float(v) for v in re.search(
        r"<td>tau</td><td>([-\d.e+]+)</td><td>± ([\d.e+-]+)", text).groups())
    assert abs(tau - TAU) < 3 * error and error < 0.2 * TAU, (tau, error)
    # the fit of the accessor on the same region, independently
    fit = ds.ued.fit(ds.ued.time_series(ring=(centre, *radii), change=True).compute(),
                     var="change")
    assert tau == pytest.approx(fit["tau"], rel=1e-3)
    # the page's time zero is the fit's
    assert page.evaluate(f"{MODEL.format('t0')}.value") == pytest.approx(fit["t0"], abs=1e-3)
    page.close()


def test_csv_export_downloads_the_traces_shown(browser, viewer, ds, tmp_path):
    page, _ = open_page(browser, viewer.url)
    drag(page, "pattern", (20.5, 70.5), (35.5, 80.5))
    wait(page, f"{MODEL.format('regions')}.data.region.length == 1")
    radius = ds["radius"].values
    drag(page, "map", (radius[10] + 0.2, 3), (radius[15] + 0.8, 8))
    wait(page, f"{MODEL.format('regions')}.data.region.length == 2")
    assert regions(page)[1] == f"radii {radius[10]:g} to {radius[15]:g}"
    page.locator("input[placeholder='new name']").fill("first ring")
    click(page, "rename")   # the selected region, by default the last one
    wait(page, f"{MODEL.format('regions')}.data.name.includes('first ring')")
    with page.expect_download() as download:
        click(page, "export CSV")
    path = tmp_path / "traces.csv"
    download.value.save_as(path)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    header = lines[0].split(",")
    assert header == ["delay", "change[R1]", "change[first ring]", "change_error[R1]",
                      "change_error[first ring]"]
    table = np.loadtxt(lines[1:], delimiter=",")
    np.testing.assert_allclose(table[:, 0], ds["delay"].values)
    for k in (1, 2):
        change, error = trace(page, k)
        np.testing.assert_allclose(table[:, k], change, rtol=1e-12)
        np.testing.assert_allclose(table[:, k + 2], error, rtol=1e-12)
        assert np.isfinite(error).all()
    # the radius range's trace: the mean ΔI/I of those radii
    mean = ds["radial_change"].isel(radius=slice(10, 16)).mean("radius").values
    np.testing.assert_allclose(table[:, 2], mean, rtol=1e-9)
    page.close()


def error_text(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function(f"window.Bokeh && Bokeh.documents.length && {MODEL.format('error')}")
    text = page.locator("text=Error").first.inner_text()
    page.close()
    return text


def test_stores_that_cannot_be_shown_are_explained_in_the_page(browser, store, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("not a store")
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(store, damaged)
    chunk = next(p for p in sorted((damaged / "diffraction").rglob("*")) if p.is_file()
                 and p.parent.name != "diffraction")
    chunk.unlink()
    incomplete = tmp_path / "incomplete.zarr"
    ds = open_reduced(store)

    def fail(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 5:
            raise RuntimeError("chunk 5 fails")
        return block

    ds["diffraction"] = ds["diffraction"].copy(data=ds["diffraction"].data.map_blocks(
        fail, dtype=ds["diffraction"].dtype))
    with pytest.raises(RuntimeError, match="chunk 5 fails"):
        write_reduced(ds, incomplete)
    expected = {other: "is not a reduced uedflow store", damaged: "diffraction",
                incomplete: "incomplete"}
    for path, message in expected.items():
        with serve(path) as server:
            text = error_text(browser, server.url)
        assert message in text and str(path.name) in text, text


def test_an_error_in_a_callback_is_shown_in_the_page(browser, viewer):
    page, _ = open_page(browser, viewer.url)
    click(page, "fit")
    wait(page, f"{MODEL.format('status')}.text.includes('no region')")
    assert "#b00020" in page.evaluate(f"{MODEL.format('status')}.text")  # in red
    page.close()
