"""The browser viewer (issue 15), driven in headless Chromium by Playwright: what the page
shows is checked against the store, pixel by pixel on screenshots where it is an image."""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import pytest
from bokeh.palettes import RdBu11, Viridis256
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.analysis import QCalibration
from uedflow.cli import main
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
    every URL it requests (websockets too)."""
    page = browser.new_page(viewport={"width": 1300, "height": 1100}, accept_downloads=True)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("websocket", lambda socket: requests.append(socket.url))
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
        const m = {MODEL.format("pattern")}.renderers.find(r => r.glyph.type == "Image"
            && r.visible).glyph.color_mapper;
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
    assert any(url.startswith("ws://127.0.0.1:") for url in requests), requests

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
    index, distance = palette_index(pixels, RdBu11)
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
        return [Array.from(data.value), Array.from(data.error)];
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

    # the intensity traces instead: the mean counts of the rectangle, the mean profile
    click(page, "intensity traces")
    wait(page, f"{MODEL.format('csv')}.data.text[0].includes('intensity[R1]')")
    with page.expect_download() as download:
        click(page, "export CSV")
    download.value.save_as(path)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    table = np.loadtxt(lines[1:], delimiter=",")
    rect = tuple(int(v) for v in re.fullmatch(r"rect rows (\d+):(\d+), cols (\d+):(\d+)",
                                              regions(page)[0]).groups())
    expected = ds.ued.time_series(rect=rect).compute()
    np.testing.assert_allclose(table[:, 1], expected["diffraction"], rtol=1e-9)
    np.testing.assert_allclose(table[:, 3], expected["diffraction_error"], rtol=1e-9)
    mean = ds["radial"].isel(radius=slice(10, 16)).mean("radius").values
    np.testing.assert_allclose(table[:, 2], mean, rtol=1e-9)
    np.testing.assert_allclose(trace(page, 1)[0], table[:, 1], rtol=1e-12)
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


def mapper(page):
    return page.evaluate(f"""() => {{
        const m = {MODEL.format("pattern")}.renderers.find(r => r.glyph.type == "Image"
            && r.visible).glyph.color_mapper;
        return [m.type, m.low, m.high];
    }}""")


def test_change_log_mask_and_centre(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    box = frame_box(page, "pattern")
    rows, cols = np.indices(SHAPE).reshape(2, -1)
    frame = ds["diffraction"].isel(delay=0).values
    linear = sample(screenshot(page), box, rows, cols)

    # the centre is marked, and the marker goes with its toggle
    row, col = ds["center"].values
    centre = sample(screenshot(page), box, np.array([row]), np.array([col]))[0]
    assert centre[0] > 200 and centre[1:].max() < 80, centre
    click(page, "centre")
    page.wait_for_timeout(300)
    centre = sample(screenshot(page), box, np.array([row]), np.array([col]))[0]
    assert not (centre[0] > 200 and centre[1:].max() < 80), centre

    # ΔI/I against the equilibrium, in a symmetric diverging scale
    click(page, "ΔI/I")
    wait(page, f"{MODEL.format('mode')}.active == 2")
    page.wait_for_timeout(500)
    kind, low, high = mapper(page)
    assert kind == "LinearColorMapper" and low == pytest.approx(-high)
    equilibrium = ds["equilibrium"].values
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(equilibrium > 0, frame / equilibrium - 1, np.nan)
    np.testing.assert_allclose(frame_values(page).reshape(SHAPE), change, rtol=1e-5,
                               atol=1e-6)
    finite = np.isfinite(change.ravel())
    index, _ = palette_index(sample(screenshot(page), box, rows, cols), RdBu11)
    expected = np.clip(np.nan_to_num((change.ravel() - low) / (high - low) * 11), 0, 10)
    assert np.mean(np.abs(index - expected.astype(int))[finite] <= 1) > 0.9

    # log: the counts' logarithm between the limits (below: black)
    click(page, "log")
    wait(page, f"{MODEL.format('mode')}.active == 1")
    page.wait_for_timeout(500)
    kind, low, high = mapper(page)
    assert kind == "LogColorMapper" and 0 < low < high
    index, _ = palette_index(sample(screenshot(page), box, rows, cols), Viridis256)
    above = frame.ravel() >= low
    expected = np.clip(((np.log(frame.ravel()[above]) - np.log(low))
                        / (np.log(high) - np.log(low)) * 256).astype(int), 0, 255)
    assert np.mean(np.abs(index[above] - expected) <= 3) > 0.95
    assert np.mean(above) > 0.3

    # the mask overlay tints the masked pixels only
    click(page, "linear")
    click(page, "mask")
    wait(page, f"{MODEL.format('show_mask')}.active")
    page.wait_for_timeout(500)
    tinted = sample(screenshot(page), box, rows, cols)
    masked = ~ds["mask"].values.ravel()
    difference = np.abs(tinted - linear).max(-1)
    assert masked.sum() > 100
    assert np.mean(difference[masked] > 40) > 0.95
    assert np.mean(difference[~masked] < 4) > 0.98
    page.close()


def test_cursor_readout_and_an_error_of_a_button(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    click(page, "fit")  # no region yet: said in red in the page
    wait(page, f"{MODEL.format('status')}.text.includes('no region')")
    assert "#b00020" in page.evaluate(f"{MODEL.format('status')}.text")
    page.mouse.move(*to_page(frame_box(page, "pattern"), 30.5, 70.5))
    wait(page, f"{MODEL.format('readout')}.text.includes('(70, 30)')")
    text = page.evaluate(f"{MODEL.format('readout')}.text")
    value, radius = (float(v) for v in re.search(r"counts ([-\d.e+]+) · r = ([\d.]+) px",
                                                  text).groups())
    assert value == pytest.approx(float(ds["diffraction"][0, 70, 30]), rel=1e-3)
    row, col = ds["center"].values
    assert radius == pytest.approx(np.hypot(70 - row, 30 - col), abs=0.06)
    assert "q =" not in text   # no calibration
    page.close()


def test_disk_remove_play_and_shift_time_zero(browser, viewer, ds):
    page, _ = open_page(browser, viewer.url)
    page.locator("select").select_option("disk")
    drag(page, "pattern", (20, 70), (32, 82))    # the disk inscribed: (75.5, 25.5), r 6
    wait(page, f"{MODEL.format('regions')}.data.region.length == 1")
    label, = regions(page)
    found = re.fullmatch(r"disk \(([\d.]+), ([\d.]+)\) r ([\d.]+)", label)
    row, col, radius = (float(v) for v in found.groups())
    np.testing.assert_allclose((row, col, radius), (75.5, 25.5, 6), atol=0.15)
    expected = ds.ued.time_series(disk=((row, col), radius), change=True).compute()
    np.testing.assert_allclose(trace(page, 1)[0], expected["change"].values, rtol=1e-6)
    page.locator("select").select_option("rect")
    drag(page, "pattern", (60, 20), (70, 30))
    wait(page, f"{MODEL.format('regions')}.data.region.length == 2")
    lines = "Bokeh.index.find_one({}).model.renderers.filter(r => r.glyph.type == 'Line').length"
    assert page.evaluate(lines.format(MODEL.format("traces"))) == 2
    page.locator(".slick-cell", has_text="R1").first.click()
    wait(page, f"{MODEL.format('regions')}.selected.indices.length == 1")
    click(page, "remove")
    wait(page, f"{MODEL.format('regions')}.data.name.length == 1")
    assert page.evaluate(f"{MODEL.format('regions')}.data.name") == ["R2"]
    assert page.evaluate(lines.format(MODEL.format("traces"))) == 1
    assert "R1" not in page.evaluate(f"{MODEL.format('csv')}.data.text[0]")

    # time zero moved: the delays, and the trace against the new equilibrium
    assert regions(page) == ["rect rows 20:30, cols 60:70"]
    rect = (20, 30, 60, 70)
    page.locator("input[inputmode='decimal'], .bk-input[type='text']").last.fill("0.5")
    page.keyboard.press("Enter")
    wait(page, f"{MODEL.format('t0')}.value == 0.5")
    click(page, "shift time zero")
    wait(page, f"{MODEL.format('status')}.text.includes('time zero moved')")
    shifted = ds.ued.shift_time_zero(0.5)
    expected = shifted.ued.time_series(rect=rect, change=True).compute()
    source = MODEL.format("trace-2")
    np.testing.assert_allclose(page.evaluate(f"Array.from({source}.data.delay)"),
                               ds["delay"].values - 0.5)
    np.testing.assert_allclose(trace(page, 2)[0], expected["change"].values, rtol=1e-6)
    assert not np.allclose(expected["change"].values,
                           ds.ued.time_series(rect=rect, change=True)["change"].values)

    # play: the delay advances by itself, and stops
    click(page, "▶ play")
    wait(page, f"{MODEL.format('delay')}.value >= 2")
    click(page, "▶ play")
    page.wait_for_timeout(600)
    stopped = page.evaluate(f"{MODEL.format('delay')}.value")
    page.wait_for_timeout(900)
    assert page.evaluate(f"{MODEL.format('delay')}.value") == stopped
    page.close()


def test_png_export_of_the_figures(browser, viewer, tmp_path):
    page, _ = open_page(browser, viewer.url)
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    click(page, "export PNG")
    for _ in range(150):
        if len(downloads) == 4:
            break
        page.wait_for_timeout(100)
    names = sorted(d.suggested_filename for d in downloads)
    assert names == [f"reduced-{n}.png" for n in ("map", "pattern", "profile", "traces")]
    pattern = next(d for d in downloads if d.suggested_filename.endswith("pattern.png"))
    pattern.save_as(tmp_path / "pattern.png")
    pixels = np.asarray(Image.open(tmp_path / "pattern.png").convert("RGB"), dtype=float)
    index, distance = palette_index(pixels[::4, ::4], Viridis256)
    near = distance < 6
    assert near.mean() > 0.3 and len(set(index[near])) > 100   # the pattern, not a blank
    page.close()


def test_q_on_the_profile_and_under_the_cursor(browser, store, ds):
    calibration = QCalibration.from_reflections([20.0], q=[1.0])   # q = radius / 20
    with serve(store, q_calibration=calibration) as server:
        page, _ = open_page(browser, server.url)
        np.testing.assert_allclose(
            page.evaluate(f"Array.from({MODEL.format('profile_data')}.data.x)"),
            ds["radius"].values / 20)
        page.mouse.move(*to_page(frame_box(page, "pattern"), 30.5, 70.5))
        wait(page, f"{MODEL.format('readout')}.text.includes('q =')")
        text = page.evaluate(f"{MODEL.format('readout')}.text")
        radius, q = (float(v) for v in re.search(r"r = ([\d.]+) px · q = ([\d.]+)",
                                                 text).groups())
        assert q == pytest.approx(radius / 20, abs=2e-3)
        labels = dict(page.evaluate(f"""() => {{
            const o = {MODEL.format('map')}.below[0].major_label_overrides;
            return o instanceof Map ? Array.from(o.entries()) : Object.entries(o);
        }}"""))
        assert len(labels) >= 3 and all(float(text) == pytest.approx((float(at) - 0.5) / 20)
                              for at, text in labels.items())   # the map's radii in q
        drag(page, "profile", (19.7 / 20, 0), (25.3 / 20, 0))
        wait(page, f"{MODEL.format('regions')}.data.region.length == 1")
        assert regions(page) == ["radii 20 to 25"]
        page.close()


def test_the_view_command_serves_until_interrupted(store):
    process = subprocess.Popen([sys.executable, "-m", "uedflow", "view", str(store),
                                "--no-browser"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group()
        with urllib.request.urlopen(url, timeout=20) as response:
            assert response.status == 200 and "bokeh" in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and "stopped" in out


def test_view_errors_in_the_terminal(viewer, store, tmp_path, capsys):
    assert main(["view", str(tmp_path / "none.zarr"), "--no-browser"]) == 2
    assert "none.zarr' does not exist" in capsys.readouterr().err
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{viewer.port}"):
        serve(store, port=viewer.port)     # in use


def test_a_live_store_is_followed_with_its_regions(browser, store, tmp_path):
    """A link repointed at a new version (as ``uedflow reduce --follow`` does): the open page
    shows it, the region kept and its trace that of the new version."""
    run = open_run(store.parent / "run")
    folder, link = tmp_path / "out.zarr.live", tmp_path / "out.zarr"
    versions = {}
    for k in (1, 2):
        part = run.isel(scan=slice(0, k + 1))
        ds = reduce(part)
        scans = [int(s) for s in part["scan"].values]
        ds.attrs["uedflow_live"] = json.dumps({"scans": scans, "complete": False,
                                               "version": f"v00000{k}"})
        write_reduced(ds, folder / f"v00000{k}")
        versions[k] = open_reduced(folder / f"v00000{k}")
    link.symlink_to(folder / "v000001")
    live = f"{MODEL.format('live')}.text"
    with serve(link) as server:
        page, _ = open_page(browser, server.url)
        assert page.evaluate(live) == "live: version v000001, scans 0\N{EN DASH}1 (run in progress)"
        drag(page, "pattern", (62.3, 60.2), (80.4, 71.6))
        wait(page, f"{MODEL.format('regions')}.data.region.length == 1")
        rect = tuple(int(v) for v in re.fullmatch(r"rect rows (\d+):(\d+), cols (\d+):(\d+)",
                                                  regions(page)[0]).groups())
        before = versions[1].ued.time_series(rect=rect, change=True)["change"].values
        np.testing.assert_allclose(trace(page, 1)[0], before, rtol=1e-6)
        new = tmp_path / ".out.zarr.new"
        os.symlink(folder / "v000002", new)
        os.replace(new, link)
        wait(page, f"{live}.includes('v000002')")
        assert page.evaluate(live) == "live: version v000002, scans 0\N{EN DASH}2 (run in progress)"
        assert regions(page) == [f"rect rows {rect[0]}:{rect[1]}, cols {rect[2]}:{rect[3]}"]
        expected = versions[2].ued.time_series(rect=rect, change=True).compute()
        change, error = trace(page, 1)
        np.testing.assert_allclose(change, expected["change"].values, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(error, expected["change_error"].values, rtol=1e-6)
        assert not np.allclose(change, before, rtol=1e-3)
        page.close()
