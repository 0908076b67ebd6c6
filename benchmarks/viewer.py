"""Latency of the browser viewer (issue 15) on a large reduced store, in headless Chromium.

The store: a synthetic reduced run of 100 delays of 2048 x 2048 frames (one zarr chunk per
delay, as ``uedflow reduce`` writes them; 1.6 GB of counts and as much of errors, written once
by ``--make`` in a child process). The viewer is served in this process and driven by
Playwright in Debian's chromium; each figure is the wall time from the user's action to the
page's models holding the result (the server's reply included), best and median of repeats:

* first render: opening the page until the first frame is on it;
* delay change: one step of the slider (keyboard) until the new frame is on the page;
* zoom: a wheel zoom until the frame is at full resolution;
* new region: a rectangle dragged on the pattern until its trace is on the page (every
  delay's frame is read: a trace reads each frame's chunk once), cold (first region) and
  again (another rectangle: the chunks in the OS page cache).

The peak resident memory of this process (the server) is printed: the movie is never held.

    python benchmarks/viewer.py [--store PATH] [--size 2048] [--delays 100]
    python benchmarks/viewer.py --screenshot docs/images/viewer.png --store DEMO.zarr
"""

import argparse
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

MODEL = "Bokeh.documents[0].get_model_by_name({!r})"


def make_store(path, size, n_delays, seed=0):
    """Write the synthetic reduced store: rings whose intensity rises by 5 % with a 2 ps time
    constant after time zero, Poisson-like noise, errors, a mask and radial profiles."""
    import dask.array as da
    import xarray as xr

    from uedflow.datasets import diffraction_pattern
    from uedflow.image import azimuthal_average
    from uedflow.pipeline import write_reduced

    delays = np.concatenate([np.linspace(-5, 0, 10, endpoint=False),
                             np.geomspace(0.1, 500, n_delays - 10)])
    rise = np.where(delays > 0, 0.05 * -np.expm1(-np.clip(delays, 0, None) / 2.0), 0.0)
    center = (0.47 * size + 0.3, 0.53 * size - 0.2)
    base = diffraction_pattern((size, size), center, kind="polycrystalline").astype(np.float32)

    def frame(block_info=None):
        index = block_info[None]["chunk-location"][0]
        rng = np.random.default_rng([seed, index])
        counts = base * (1 + rise[index])
        return (counts + rng.normal(0, 1, counts.shape) * np.sqrt(counts)).astype(
            np.float32)[None]

    chunks = ((1,) * n_delays, (size,), (size,))
    images = da.map_blocks(frame, chunks=chunks, dtype=np.float32)
    errors = da.map_blocks(lambda block_info=None: (np.sqrt(base) / 2)[None],
                           chunks=chunks, dtype=np.float32)
    radius, profile = azimuthal_average(base, center)
    change = rise[:, None] * np.ones(radius.size)
    mask = np.ones((size, size), bool)
    mask[: int(center[0]), int(center[1]) - size // 40: int(center[1]) + size // 40] = False
    ds = xr.Dataset(
        {"diffraction": (("delay", "y", "x"), images, {"units": "counts"}),
         "diffraction_error": (("delay", "y", "x"), errors, {"units": "counts"}),
         "error_correlation": ("delay", np.full(n_delays, 1.5)),
         "equilibrium": (("y", "x"), base), "equilibrium_error": (("y", "x"), np.sqrt(base) / 6),
         "mask": (("y", "x"), mask), "center": ("coord", list(center)),
         "radial": (("delay", "radius"), profile * (1 + change)),
         "radial_error": (("delay", "radius"), np.full(change.shape, 1.0)),
         "radial_change": (("delay", "radius"), change),
         "radial_change_error": (("delay", "radius"), np.full(change.shape, 1e-3))},
        coords={"delay": delays, "radius": radius, "coord": ["row", "col"]},
        attrs={"uedflow": json.dumps({"config": {"dynamics": {"t0": 0.0}},
                                      "source": "benchmarks/viewer.py"})})
    write_reduced(ds, path, overwrite=True)


def launch():
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=["--no-sandbox"])
    return playwright, browser


def frame_box(page, name):
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
    (x0, x1), (y0, y1) = box["x"], box["y"]
    return (box["left"] + (x - x0) / (x1 - x0) * box["width"],
            box["top"] + (y1 - y) / (y1 - y0) * box["height"])


def drag(page, name, start, end):
    box = frame_box(page, name)
    page.mouse.move(*to_page(box, *start))
    page.mouse.down()
    page.mouse.move(*to_page(box, *end), steps=8)
    page.mouse.up()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1300, "height": 1150})
    page.goto(url)
    page.wait_for_function(f"window.Bokeh && Bokeh.documents.length && {MODEL.format('frame')}"
                           f" && {MODEL.format('frame')}.data.image.length", timeout=120000)
    return page


def timed(action, condition, page, timeout=600000):
    start = time.perf_counter()
    action()
    page.wait_for_function(condition, timeout=timeout)
    return time.perf_counter() - start


def measure(store, repeat):
    from uedflow.pipeline import open_reduced
    from uedflow.viewer import serve

    n = open_reduced(store).sizes["x"]

    playwright, browser = launch()
    results = {}
    with serve(store) as server:
        first = []
        for _ in range(repeat):
            start = time.perf_counter()
            page = open_page(browser, server.url)
            first.append(time.perf_counter() - start)
            page.close()
        results["first render"] = first
        page = open_page(browser, server.url)
        page.locator(".noUi-handle").focus()
        steps = []
        for k in range(2, 2 + 2 * repeat):
            steps.append(timed(lambda: page.keyboard.press("ArrowRight"),
                               f"{MODEL.format('delay')}.title.includes('({k} of')", page))
        results["delay change"] = steps
        box = frame_box(page, "pattern")
        page.mouse.move(*to_page(box, n / 2, n / 2))
        results["zoom to full resolution"] = [timed(
            lambda: [page.mouse.wheel(0, -400) for _ in range(6)],
            f"{MODEL.format('frame')}.data.factor[0] == 1", page)]
        page.close()
        page = open_page(browser, server.url)
        regions = f"{MODEL.format('regions')}.data.region.length"
        results["new region, cold"] = [timed(
            lambda: drag(page, "pattern", (0.58 * n, 0.15 * n), (0.63 * n, 0.19 * n)),
            f"{regions} == 1", page)]
        results["new region, again"] = [timed(
            lambda: drag(page, "pattern", (0.3 * n, 0.73 * n), (0.34 * n, 0.78 * n)),
            f"{regions} == 2", page)]
        page.close()
    browser.close()
    playwright.stop()
    for name, times in results.items():
        print(f"{name:26s} best {min(times):7.3f} s  median {statistics.median(times):7.3f} s"
              f"  ({len(times)} runs)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the server process: {peak:.0f} MiB")


def screenshot(store, output):
    """The viewer on ``store`` with a ring, a rectangle, a radius range, the Bragg peaks and
    Brillouin zones, and a fit."""
    from uedflow.pipeline import open_reduced
    from uedflow.viewer import serve

    ds = open_reduced(store)
    row, col = ds["center"].values
    radius = ds["radius"].values
    playwright, browser = launch()
    with serve(store) as server:
        page = open_page(browser, server.url)
        regions = f"{MODEL.format('regions')}.data.region.length"
        page.locator("select").select_option("ring")
        outer = 0.45 * min(ds.sizes["y"], ds.sizes["x"])
        drag(page, "pattern", (col - outer, row - 2), (col - outer + 12, row + 2))
        page.wait_for_function(f"{regions} == 1")
        page.locator("select").select_option("rect")
        drag(page, "pattern", (col + 60, row + 60), (col + 110, row + 100))
        page.wait_for_function(f"{regions} == 2")
        n = radius.size
        drag(page, "map", (radius[n // 3], 2), (radius[n // 3 + 8], 6))
        page.wait_for_function(f"{regions} == 3")
        page.get_by_role("button", name="peaks & zones", exact=True).click()
        page.wait_for_function(f"{MODEL.format('status')}.text.includes('Bragg peaks')")
        page.get_by_role("button", name="fit", exact=True).click()
        page.wait_for_function(f"{MODEL.format('fit_result')}.text.includes('tau')")
        page.locator(".noUi-handle").focus()
        for _ in range(7):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"{MODEL.format('delay')}.title.includes('(8 of')")
        page.mouse.move(*to_page(frame_box(page, "pattern"), col + 80, row + 80))
        page.wait_for_timeout(800)
        image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
    browser.close()
    playwright.stop()
    print(f"wrote {output}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("viewer-bench.zarr"))
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--delays", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--make", action="store_true", help="only write the store")
    parser.add_argument("--screenshot", type=Path, help="a PNG of the viewer on --store")
    args = parser.parse_args(argv)
    if args.screenshot:
        screenshot(args.store, args.screenshot)
        return
    if args.make:
        start = time.perf_counter()
        make_store(args.store, args.size, args.delays)
        print(f"wrote {args.store} ({args.delays} x {args.size}^2) in "
              f"{time.perf_counter() - start:.0f} s")
        return
    if not (args.store / "zarr.json").exists():
        subprocess.run([sys.executable, __file__, "--make", "--store", str(args.store),
                        "--size", str(args.size), "--delays", str(args.delays)], check=True)
    measure(args.store, args.repeat)


if __name__ == "__main__":
    main()
