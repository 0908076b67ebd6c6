"""What the viewer computes, without a browser: windows of frames, traces of regions, and
that a large lazy store is read one window of one frame at a time."""

import json
import os
import types

import numpy as np
import pytest
import xarray as xr

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.datasets import diffraction_pattern
from uedflow.viewer.app import PATTERN_SIZE, Viewer
from uedflow.viewer.data import (
    block_mean,
    check_store,
    frame_window,
    live_label,
    radius_trace,
    region_from_box,
    region_trace,
    visible_window,
)


def dataset(shape=(40, 50), n=5, chunks=None, reads=None, seed=0):
    """A reduced Dataset with random values (lazy, and every chunk read recorded in
    ``reads`` when given)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(100, 10, (n, *shape)).astype(np.float32)
    errors = rng.uniform(1, 2, (n, *shape)).astype(np.float32)
    mask = np.ones(shape, bool)
    mask[:5, :7] = False
    radius = np.arange(3, 20)
    change = rng.normal(0, 0.01, (n, radius.size))
    ds = xr.Dataset(
        {"diffraction": (("delay", "y", "x"), images),
         "diffraction_error": (("delay", "y", "x"), errors),
         "error_correlation": ("delay", rng.uniform(1, 2, n)),
         "equilibrium": (("y", "x"), images[:2].mean(0)),
         "equilibrium_error": (("y", "x"), errors[0] / 2),
         "mask": (("y", "x"), mask),
         "center": ("coord", [shape[0] / 2, shape[1] / 2]),
         "radial": (("delay", "radius"), 100 * (1 + change)),
         "radial_error": (("delay", "radius"), np.full(change.shape, 0.5)),
         "radial_change": (("delay", "radius"), change),
         "radial_change_error": (("delay", "radius"), np.full(change.shape, 0.002))},
        coords={"delay": np.linspace(-1, 3, n), "radius": radius, "coord": ["row", "col"]})
    if chunks is not None:
        ds = ds.chunk({"delay": 1, "y": chunks, "x": chunks})
    if reads is not None:
        def record(block, block_info=None):
            reads.append(tuple(block_info[0]["chunk-location"]))
            return block
        data = ds["diffraction"].data
        ds["diffraction"] = ds["diffraction"].copy(data=data.map_blocks(record,
                                                                        dtype=data.dtype))
    return ds


def test_block_mean_and_windows():
    image = np.arange(35.0).reshape(5, 7)
    image[0, 0] = np.nan
    out = block_mean(image, 3)
    assert out.shape == (2, 3)
    assert out[0, 0] == pytest.approx(np.nanmean(image[:3, :3]))
    assert out[1, 2] == pytest.approx(image[3:, 6:].mean())   # a ragged corner: its pixels
    # the visible part of a zoomed plot, a quarter more on every side, within the frame
    assert visible_window((100, 200), 50, 90, 30, 10) == (5, 35, 40, 100)
    assert visible_window((100, 200), -50, 500, -10, 300) == (0, 100, 0, 200)


def test_regions_from_boxes_and_their_traces_are_time_series():
    ds = dataset()
    centre = tuple(ds["center"].values)
    for kind, box in (("rect", (3.2, 11.6, 0.4, 8.7)), ("disk", (40, 52, 30, 42)),
                      ("ring", (38, 49, 19, 21))):
        region = region_from_box(kind, *box, centre)
        trace = region_trace(ds, region)   # of the region's bounding box only
        expected = ds.ued.time_series(**region, change=True)
        for name, same in (("change", "change"), ("intensity", "diffraction")):
            np.testing.assert_allclose(trace[name], expected[same], rtol=1e-10)
            np.testing.assert_allclose(trace[f"{name}_error"], expected[f"{same}_error"],
                                       rtol=1e-10)
    assert region_from_box("rect", 3.2, 11.6, 0.4, 8.7, centre) == {"rect": (0, 9, 3, 12)}
    assert region_from_box("disk", 40, 52, 30, 42, centre)["disk"] == ((35.5, 45.5), 6.0)
    # a ring about the centre (20, 25) through the box: its nearest point and farthest corner
    (_, r1, r2), = region_from_box("ring", 38, 49, 19, 21, centre).values()
    assert (r1, r2) == (12.5, round(float(np.hypot(20.5 - 20, 48.5 - 25)), 1))
    assert region_from_box("rect", 3, 3.2, 0, 9, centre) is None
    # a box beyond the frame (after a pan): its pixels in the frame
    region = region_from_box("rect", -6.3, 8.2, 35.4, 47.0, centre, shape=(40, 50))
    assert region == {"rect": (35, 40, 0, 8)}
    np.testing.assert_allclose(region_trace(ds, region)["change"],
                               ds.ued.time_series(**region, change=True)["change"])
    with pytest.raises(ValueError, match="outside the frame"):
        region_trace(ds, {"rect": (60, 70, 0, 5)})


def test_radius_trace_mean_and_error():
    ds = dataset()
    trace = radius_trace(ds, 5, 8)
    selected = ds["radial_change"].values[:, 2:6]
    np.testing.assert_allclose(trace["change"], selected.mean(1))
    np.testing.assert_allclose(trace["change_error"], np.sqrt(4 * 0.002**2) / 4)
    np.testing.assert_allclose(trace["intensity"], ds["radial"].values[:, 2:6].mean(1))
    np.testing.assert_allclose(trace["intensity_error"], np.sqrt(4 * 0.5**2) / 4)
    ds["radial_change_error"][1, 3] = np.nan    # an unknown error: unknown, not zero
    trace = radius_trace(ds, 5, 8)
    assert np.isnan(trace["change_error"][1]) and np.isfinite(trace["change_error"][0])
    with pytest.raises(ValueError, match="no radius between 30 and 40"):
        radius_trace(ds, 30, 40)


def test_check_store_names_what_is_missing():
    with pytest.raises(ValueError, match="'some.zarr'.*lacks diffraction_error, equilibrium"):
        check_store(dataset().drop_vars(["diffraction_error", "equilibrium"]), "some.zarr")
    with pytest.raises(ValueError, match="lacks delay"):
        check_store(dataset().drop_vars("delay"), "some.zarr")
    check_store(dataset(), "some.zarr")


def test_frame_window_reads_only_the_window():
    reads = []
    ds = dataset((64, 64), n=3, chunks=16, reads=reads)
    values, factor = frame_window(ds["diffraction"].isel(delay=2), (20, 40, 0, 30),
                                  max_pixels=8)
    assert factor == 4 and values.shape == (5, 8)
    assert sorted(set(reads)) == [(2, y, x) for y in (1, 2) for x in (0, 1)]  # rows 16:48
    frame = ds["diffraction"].values[2, 20:40, :30]
    np.testing.assert_allclose(values, block_mean(frame, 4), rtol=1e-6)


def test_the_viewer_reads_one_frame_downsampled_then_full_resolution_on_zoom():
    reads = []
    ds = dataset((2048, 2048), n=4, chunks=512, reads=reads)
    viewer = Viewer(ds, "large.zarr")      # no server: the callbacks run at once
    image = viewer.frame_source.data["image"][0]
    assert viewer.frame_source.data["factor"] == [4]
    assert max(image.shape) <= PATTERN_SIZE and image.shape == (512, 512)
    assert {r[0] for r in reads} == {0} and len(reads) == 16   # one frame, once
    reads.clear()
    viewer.slider.value = 3
    assert {r[0] for r in reads} == {3} and len(reads) == 16
    reads.clear()
    viewer._on_ranges(types.SimpleNamespace(x0=1000, x1=1200, y0=600, y1=400))
    data = viewer.frame_source.data
    assert data["factor"] == [1] and (data["x"], data["y"]) == ([950], [350])
    assert sorted(set(reads)) == [(3, 0, 1), (3, 0, 2), (3, 1, 1), (3, 1, 2)]  # the window's
    np.testing.assert_array_equal(data["image"][0], ds["diffraction"].values[3, 350:650,
                                                                              950:1250])
    viewer.add_region({"rect": (100, 130, 1500, 1540)})
    trace = viewer.regions["R1"]["trace"]
    expected = ds.ued.time_series(rect=(100, 130, 1500, 1540), change=True)
    np.testing.assert_allclose(trace["change"], expected["change"], rtol=1e-10)


def test_bragg_peaks_and_brillouin_zones_overlay():
    center = (64.3, 63.6)
    pattern = diffraction_pattern((128, 128), center, kind="single_crystal",
                                  background=0.1).astype(np.float32)
    ds = dataset((128, 128), n=3)
    ds["equilibrium"] = (("y", "x"), pattern)
    ds["diffraction"] = (("delay", "y", "x"), np.stack([pattern] * 3))
    ds["mask"] = (("y", "x"), np.ones((128, 128), bool))
    ds["center"] = ("coord", list(center))
    viewer = Viewer(ds, "crystal.zarr")
    viewer.show_lattice.active = True       # no server: found at once
    x, y = (np.asarray(viewer.lattice_source.data[k]) for k in ("x", "y"))
    assert len(x) >= 6 and all(r.visible for r in viewer.lattice)
    peaks = np.column_stack([y, x]) - 0.5
    for row, col in peaks:                   # each on a maximum of the pattern
        r, c = round(row), round(col)
        top = np.unravel_index(pattern[r - 3:r + 4, c - 3:c + 4].argmax(), (7, 7))
        assert np.hypot(top[0] + r - 3 - row, top[1] + c - 3 - col) < 1
    zones = list(zip(viewer.zones_source.data["xs"], viewer.zones_source.data["ys"],
                     strict=True))
    assert len(zones) >= 1
    cells = np.vstack([peaks, center])
    for xs, ys in zones:                     # a zone is the cell about a peak or the centre
        middle = np.array([np.mean(ys[:-1]), np.mean(xs[:-1])]) - 0.5
        assert np.hypot(*(cells - middle).T).min() < 1.5


def test_a_store_without_radial_profiles_shows_the_rest():
    ds = dataset().drop_vars(["radial", "radial_error", "radial_change",
                              "radial_change_error"])
    viewer = Viewer(ds, "no-radial.zarr")
    assert viewer.map is None and [f.name for f in viewer.figures] == ["pattern", "traces"]
    viewer.slider.value = 2
    np.testing.assert_array_equal(viewer.frame_source.data["image"][0],
                                  ds["diffraction"].values[2])
    viewer.add_region({"rect": (10, 20, 10, 30)})
    np.testing.assert_allclose(viewer.regions["R1"]["trace"]["change"],
                               ds.ued.time_series(rect=(10, 20, 10, 30), change=True)["change"])
    viewer.shift_time_zero(0.5)
    assert viewer.slider.title.startswith(f"delay {ds['delay'].values[2] - 0.5:g} ps")


def repoint(link, target):
    """Point the link at ``target`` atomically, as ``uedflow reduce --follow`` does."""
    new = link.with_name(".new-link")
    os.symlink(target, new)
    os.replace(new, link)


def test_a_live_store_is_shown_version_after_version(tmp_path):
    versions = {}
    for k in (1, 2, 3):
        ds = dataset(seed=k)
        ds["center"] = ("coord", [20.0 + k, 25.0])
        ds.attrs["uedflow_live"] = json.dumps({"scans": list(range(1, k + 2)),
                                               "complete": k == 3, "version": f"v00000{k}"})
        versions[f"v00000{k}"] = ds
        (tmp_path / f"v00000{k}").mkdir()
    link = tmp_path / "out.zarr"
    link.symlink_to("v000001")
    viewer = Viewer(versions["v000001"], link)
    assert not viewer.live.visible     # a plain store: no live line
    viewer.follow(link.resolve(), lambda path: versions[path.name])
    assert viewer.live.visible
    assert viewer.live.text == "live: version v000001, scans 1\N{EN DASH}2 (run in progress)"
    viewer.add_region({"rect": (10, 20, 10, 30)})
    viewer.add_region({"radii": (5, 8)}, name="band")
    viewer.slider.value = 3
    viewer.shift_time_zero(0.5)
    viewer.check_version()                   # the same version: nothing to do
    assert viewer.ds["center"].values[0] == 21

    repoint(link, "v000002")
    viewer.check_version()
    ds = versions["v000002"].ued.shift_time_zero(0.5)   # time zero as moved on the page
    assert viewer.live.text == "live: version v000002, scans 1\N{EN DASH}3 (run in progress)"
    assert viewer.version == tmp_path / "v000002" and viewer.slider.value == 3
    assert list(viewer.regions) == ["R1", "band"]
    assert [e["region"] for e in viewer.regions.values()] == [{"rect": (10, 20, 10, 30)},
                                                              {"radii": (5, 8)}]
    np.testing.assert_allclose(viewer.regions["R1"]["source"].data["value"],
                               ds.ued.time_series(rect=(10, 20, 10, 30), change=True)["change"])
    np.testing.assert_allclose(viewer.regions["band"]["source"].data["value"],
                               radius_trace(ds, 5, 8)["change"])
    np.testing.assert_array_equal(viewer.frame_source.data["image"][0],
                                  ds["diffraction"].values[3])
    np.testing.assert_allclose(viewer.map_source.data["image"][0], ds["radial_change"])
    np.testing.assert_allclose(viewer.profile_source.data["change"],
                               ds["radial_change"].values[3])
    assert viewer.center_marker.data_source.data["y"] == [22.5]
    assert viewer._readout_js.args["center"] == [22.0, 25.0]

    repoint(link, "v000009")                 # gone before it could be opened
    viewer.check_version()
    assert "the new version v000009 cannot be opened" in viewer.status.text
    assert "still showing v000002" in viewer.status.text
    assert viewer.version.name == "v000002" and "v000002" in viewer.live.text
    repoint(link, "v000003")
    viewer.check_version()
    assert viewer.live.text == "live: version v000003, scans 1\N{EN DASH}4 (run complete)"
    np.testing.assert_array_equal(viewer.frame_source.data["image"][0],
                                  versions["v000003"]["diffraction"].values[3])


def test_live_label():
    ds = dataset()
    assert live_label(ds, "out.zarr") == "live: version out.zarr"   # not written live
    ds.attrs["uedflow_live"] = json.dumps({"scans": [1, 2, 4, 5, 6, 9], "complete": False})
    assert live_label(ds, "x.live/v000007") == ("live: version v000007, scans 1\N{EN DASH}2, "
                                                "4\N{EN DASH}6, 9 (run in progress)")
