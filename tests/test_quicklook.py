"""Quick looks show the stored data: ΔI/I as the reduction stored it (its t0, reference and
baseline), delays at their values, labelled axes with units, the centre (row, col) and the
masked fraction; checked on the figure objects of a hand-made reduced Dataset."""

import json

import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from uedflow.pipeline.quicklook import (
    pattern_figure,
    peaks_figure,
    quicklook,
    radial_figure,
)

DELAYS = np.array([-3.0, -1.0, -0.4, 0.2, 0.6, 1.0, 1.5, 2.5, 4.0, 8.0, 20.0, 50.0])
T0 = 0.5  # the delays before t0 include 0.2 ps: "delay < 0" would be the wrong reference
RINGS = (15.0, 28.0, 41.0)
CENTER = (40.3, 70.6)  # (row, col), far off the diagonal
SHAPE = (96, 128)


def background(r):
    return 200.0 * np.exp(-r / 25.0)


def rings(r, t):
    """Ring intensities, lowered after t0 by a Debye-Waller-like factor."""
    drop = np.where(t > T0, 1 - np.exp(-(t - T0) / 1.5), 0.0)
    return sum(a * (1 - 0.05 * (k + 1) * drop) * np.exp(-0.5 * ((r - r0) / 1.5) ** 2)
               for k, (a, r0) in enumerate(zip((300.0, 200.0, 120.0), RINGS, strict=True)))


@pytest.fixture(scope="module")
def reduced():
    """A reduced Dataset as the contract has it, with its true radial_change."""
    rng = np.random.default_rng(0)
    radius = np.arange(91.0)
    t = DELAYS[:, None]
    radial = background(radius) * (1 + 0.01 * (t > T0)) + rings(radius, t)
    radial = radial + rng.normal(0, 0.5, radial.shape)
    before = DELAYS < T0
    equilibrium_profile = radial[before].mean(axis=0)
    change = radial / equilibrium_profile - 1
    change[:, -1] = np.nan  # e.g. a radius with no valid pixel in the equilibrium
    change_error = 0.5 / equilibrium_profile * np.sqrt(1 + 1 / before.sum()) * np.ones_like(t)
    rows, cols = np.indices(SHAPE)
    r = np.hypot(rows - CENTER[0], cols - CENTER[1])
    image = np.interp(r, radius, equilibrium_profile)
    file_mask = np.zeros(SHAPE, bool)
    file_mask[:, :6] = True
    beam_block = (r < 6) | ((np.abs(rows - CENTER[0]) < 3) & (cols > CENTER[1]))
    mask = ~(file_mask | beam_block)
    ds = xr.Dataset(
        {"radial": (("delay", "radius"), radial),
         "radial_change": (("delay", "radius"), change),
         "radial_change_error": (("delay", "radius"), change_error),
         # the baseline is the diffuse background: radial - baseline is ~0 between the rings
         "baseline": (("delay", "radius"), np.broadcast_to(background(radius), radial.shape)),
         "equilibrium": (("y", "x"), image.astype(np.float32)),
         "mask": (("y", "x"), mask),
         "center": ("coord", np.array(CENTER))},
        coords={"delay": DELAYS, "radius": radius, "coord": ["row", "col"]})
    attrs = {"delay": ("ps", "pump-probe delay"), "radius": ("px", "radius"),
             "radial": ("counts", "azimuthal average"),
             "radial_change": ("1", "ΔI/I of the azimuthal average"),
             "radial_change_error": ("1", "standard error of ΔI/I"),
             "baseline": ("counts", "baseline"), "equilibrium": ("counts", "equilibrium"),
             "mask": ("1", "valid pixel"), "center": ("px", "pattern centre")}
    for name, (units, long_name) in attrs.items():
        ds[name].attrs.update(units=units, long_name=long_name)
    parts = {"total": float(1 - mask.mean()), "file": float(file_mask.mean()),
             "collection": 0.0, "beam_block": float(beam_block.mean()), "margin": 0.0}
    ds.attrs["uedflow"] = json.dumps({"config": {"dynamics": {"t0": T0,
                                                               "reference": "before_t0"}},
                                      "mask": parts})
    return ds


def test_radial_map_is_the_stored_change_one_row_per_delay(reduced):
    fig = radial_figure(reduced)
    ax = fig.axes[0]
    (mesh,) = ax.collections
    stored = reduced["radial_change"].values
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(stored.shape), stored)
    # what the old quick look drew instead: ΔI/I of baseline-subtracted profiles against the
    # delays < 0 — ±1 stripes between the rings, far from the stored values
    profiles = reduced["radial"].values - reduced["baseline"].values
    old = profiles / profiles[DELAYS < 0].mean(axis=0) - 1
    assert np.nanmax(np.abs(old - stored)) > 1
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{t:g}" for t in DELAYS]
    np.testing.assert_array_equal(ax.get_yticks(), np.arange(DELAYS.size))
    assert ax.get_xlabel() == "radius (px)"
    assert ax.get_ylabel().startswith("pump-probe delay (ps)")
    assert fig.axes[1].get_ylabel() == "ΔI/I of the azimuthal average"  # the colour bar
    vmin, vmax = mesh.get_clim()
    assert vmin == -vmax == -np.nanpercentile(np.abs(stored), 99)
    (t0_line,) = ax.get_lines()
    assert t0_line.get_ydata()[0] == 3.5  # between 0.2 ps (before t0) and 0.6 ps
    assert "t0 = 0.5 ps" in ax.get_title()


def test_peaks_plot_the_stored_change_with_its_errors_at_the_rings(reduced):
    fig = peaks_figure(reduced)
    left, right = fig.axes
    stored = reduced["radial_change"].values
    error = reduced["radial_change_error"].values
    radii = []
    for bars in right.containers:
        line, _, (segments,) = bars.lines
        i = int(np.flatnonzero(reduced["radius"].values == float(
            bars.get_label().split()[2]))[0])
        radii.append(reduced["radius"].values[i])
        np.testing.assert_array_equal(line.get_xdata(), DELAYS)
        np.testing.assert_array_equal(line.get_ydata(), stored[:, i])
        half = np.array([(s[1, 1] - s[0, 1]) / 2 for s in segments.get_segments()])
        np.testing.assert_allclose(half, error[:, i], rtol=1e-12)
    assert set(RINGS) <= set(radii)
    assert right.get_xscale() == "symlog"  # unevenly spaced delays, drawn at their values
    assert right.get_xlabel() == "pump-probe delay (ps)"
    assert right.get_ylabel() == "ΔI/I of the azimuthal average"
    assert left.get_xlabel() == "radius (px)"
    assert left.get_ylabel() == "azimuthal average (counts)"
    assert [line.get_xdata()[0] for line in right.get_lines() if line.get_linestyle() == "--"
            ] == [T0]


def test_pattern_states_the_centre_row_col_and_the_masked_fraction(reduced):
    fig = pattern_figure(reduced)
    ax = fig.axes[0]
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    mask = reduced["mask"].values
    masked = f"{100 * (1 - mask.mean()):.1f} % of the frame"
    parts = json.loads(reduced.attrs["uedflow"])["mask"]  # the parts that mask pixels, in %
    assert (f"masked: {masked} (file {100 * parts['file']:.1f} %, beam block "
            f"{100 * parts['beam_block']:.1f} %)") in texts
    assert "centre (row, col) = (40.30, 70.60) px" in texts
    (marker,) = ax.get_lines()
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (CENTER[1], CENTER[0])
    (image,) = ax.get_images()
    shown = np.ma.getdata(image.get_array())
    assert np.isnan(shown[~mask]).all()
    equilibrium = reduced["equilibrium"].values.astype(float)
    low = np.percentile(equilibrium[mask], 1)
    np.testing.assert_allclose(shown[mask], np.log10(np.clip(equilibrium[mask], low, None)))
    assert ax.get_xlabel() == "column x (px)" and ax.get_ylabel() == "row y (px)"
    assert fig.axes[1].get_ylabel() == "log10 intensity (counts)"


def test_labels_fall_back_to_px_and_ps_without_attrs(reduced):
    bare = reduced.copy()
    bare.attrs = {}
    for name in bare.variables:
        bare[name].attrs = {}
    ax = radial_figure(bare).axes[0]
    assert ax.get_xlabel() == "radius (px)" and ax.get_ylabel().startswith("delay (ps)")
    assert ax.get_lines() == []  # no t0 known: no line
    right = peaks_figure(bare).axes[1]
    assert right.get_xlabel() == "delay (ps)" and right.get_ylabel() == "ΔI/I"


def test_quicklook_writes_the_pngs_and_names_what_is_missing(reduced, tmp_path):
    paths = quicklook(reduced, tmp_path / "plots")
    assert [p.name for p in paths] == ["pattern.png", "radial.png", "peaks.png"]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 600
        assert image[..., :3].std() > 0.05  # drawn, not blank
    with pytest.raises(ValueError, match="radial_change"):
        quicklook(reduced.drop_vars("radial_change"), tmp_path / "other")
