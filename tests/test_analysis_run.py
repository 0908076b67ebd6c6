"""From a reduced single-crystal run to physics, on a lazy store, against the truth of the run.

The run (written once per module): a hexagonal zone-axis pattern (graphite-like, a = 2.46 Å,
reciprocal spacing ``LATTICE_FRACTION * 256`` px, so a known q scale), 3 scans of 16 delays,
Poisson noise, drift, hot pixels, a beam block. The pump raises the mean-square displacement
as ``B(t) = B_MAX r(t)``, ``r`` the rise ``1 - exp(-(t - T0) / TAU)`` convolved with a Gaussian
of FWHM ``FWHM`` (computed here numerically, independent of the model under test); every
Bragg spot is weakened by ``exp(-B q̃²)`` (``q̃`` = distance / 256), so that
``Δ⟨u²⟩ = 3 B / (k 256)²`` with ``k`` the q scale (1/Å per px); the diffuse background rises by
``DIFFUSE r(t)``.
"""

import math

import dask
import dask.array as da
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import tifffile
import xarray as xr
from dask.callbacks import Callback
from scipy.signal import fftconvolve

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.analysis import Lattice, QCalibration, zone_regions
from uedflow.cli import main
from uedflow.datasets import LATTICE_FRACTION, diffraction_pattern, make_frame, make_run
from uedflow.image import bragg_peaks, brillouin_zones
from uedflow.io.runs import open_run
from uedflow.pipeline import open_reduced, reduce, write_reduced
from uedflow.pipeline.export import open_hdf5

SHAPE = (256, 256)
DELAYS = [-2.0, -1.0, -0.5, -0.25, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0]
T0, FWHM, TAU, B_MAX, DIFFUSE = 0.3, 0.3, 1.5, 2.0, 0.1
GRAPHITE = Lattice.hexagonal(2.46, 6.71)
#: The q scale of the run: the (100) reflections sit LATTICE_FRACTION * 256 px from the centre.
SCALE = float(GRAPHITE.q((1, 0, 0))) / (LATTICE_FRACTION * SHAPE[0])
MSD_MAX = 3 * B_MAX / (SCALE * SHAPE[0]) ** 2


def rise(t):
    """The true rise: 1 - exp(-(t - T0) / TAU) after T0, convolved numerically with the
    Gaussian response."""
    dt = 1e-3
    grid = np.arange(-6, 16, dt)
    s = grid - T0
    step = np.where(s > 0, -np.expm1(-np.maximum(s, 0) / TAU), 0.0)
    sigma = FWHM / (2 * math.sqrt(2 * math.log(2)))
    x = np.arange(-8 * sigma, 8 * sigma + dt / 2, dt)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return np.clip(np.interp(t, grid, fftconvolve(step, kernel / kernel.sum(), mode="same")),
                   0, None)


@pytest.fixture(scope="module")
def crystal(tmp_path_factory):
    """The reduced store of the run (opened lazily) and its truth."""
    root = tmp_path_factory.mktemp("crystal")
    meta = make_run(root / "run", shape=SHAPE, delays=DELAYS, n_scans=3, kind="single_crystal",
                    seed=3, drift=0.3)
    truth = meta["truth"]
    r = rise(np.array(DELAYS))
    for s, files in enumerate(meta["files"]):
        for i, name in enumerate(files):
            frame = make_frame(SHAPE, tuple(truth["centers"][s][i]), kind="single_crystal",
                               counts=truth["counts"], seed=[3, 0, s, i],
                               debye_waller=B_MAX * r[i], background=1 + DIFFUSE * r[i],
                               block_center=tuple(truth["center"]),
                               hot_pixels=truth["hot_pixels"], dark=truth["dark_level"])
            tifffile.imwrite(root / "run" / name, frame)
    write_reduced(reduce(open_run(root / "run")), root / "reduced.zarr")
    return {"ds": open_reduced(root / "reduced.zarr"), "truth": truth, "rise": r,
            "root": root}


@pytest.fixture(scope="module")
def peaks(crystal):
    """The indexed peak traces, computed, and the q calibration they give."""
    traces = crystal["ds"].ued.peak_traces(lattice=GRAPHITE).compute()
    return traces, QCalibration.from_reflections(traces["radius"].values,
                                                 q=traces["q"].values)


def test_q_scale_from_the_indexed_peaks(peaks):
    traces, cal = peaks
    assert traces.sizes["peak"] > 50 and traces["indexed"].all()
    assert abs(cal.scale / SCALE - 1) < 0.002  # 0.2 %
    assert abs(cal.scale - SCALE) < 2 * cal.scale_error
    # the (100) family: six peaks at the first ring, q exact from the lattice
    first = traces.where(traces["family"] == 0, drop=True)
    assert first.sizes["peak"] >= 4
    np.testing.assert_allclose(first["q"].values, GRAPHITE.q((1, 0, 0)))
    assert set(np.abs(first["h"].values + first["k"].values)) <= {0, 1}


def test_peak_positions_are_the_lattice(crystal, peaks):
    """Every peak within 0.1 px of its lattice site about the movie's centre (known within
    0.25 px: its offset is common to every peak)."""
    traces, _ = peaks
    spacing = LATTICE_FRACTION * SHAPE[0]
    b1 = spacing * np.array([0.0, 1.0])
    b2 = spacing * np.array([math.sin(math.pi / 3), math.cos(math.pi / 3)])
    offset = np.stack([traces["row"], traces["col"]], axis=1) - crystal["ds"]["center"].values
    coords = np.linalg.solve(np.stack([b1, b2]).T, offset.T).T
    residual = offset - np.rint(coords) @ np.stack([b1, b2])
    assert np.hypot(*residual.mean(axis=0)) < 0.25
    assert np.hypot(*(residual - residual.mean(axis=0)).T).max() < 0.1


def test_peak_traces_follow_the_debye_waller_factor(crystal, peaks):
    """ΔI/I of every peak at every delay against exp(-B q̃²) - 1, within its error: RMS z
    within 1 ± 0.25, no bias beyond a fifth of an error."""
    traces, _ = peaks
    q_tilde = traces["radius"].values / SHAPE[0]
    predicted = np.expm1(-B_MAX * crystal["rise"][None, :] * q_tilde[:, None] ** 2)
    z = (traces["change"].values - predicted) / traces["change_error"].values
    assert traces["change"].dims == ("peak", "delay")
    assert predicted.min() < -0.3  # a strong drop: the comparison means something
    assert np.sqrt(np.mean(z**2)) == pytest.approx(1, abs=0.25)
    assert abs(z.mean()) < 0.2
    assert (traces["equilibrium"] > 0).all() and traces.attrs["radius"] > 3


def test_averaged_families(crystal, peaks):
    traces, _ = peaks
    families = crystal["ds"].ued.peak_traces(lattice=GRAPHITE, average=True).compute()
    assert families["change"].dims == ("family", "delay")
    assert families["members"].sum() == traces.sizes["peak"]
    assert families["hkl"].values[0] in {"1 0 0", "0 1 0", "1 -1 0", "-1 1 0"}
    one = traces.where(traces["family"] == 3, drop=True)
    np.testing.assert_allclose(families["intensity"].sel(family=3),
                               one["intensity"].mean("peak"))
    n = one.sizes["peak"]
    np.testing.assert_allclose(families["intensity_error"].sel(family=3),
                               np.sqrt((one["intensity_error"] ** 2).sum("peak")) / n)
    q_tilde = families["radius"].values / SHAPE[0]
    predicted = np.expm1(-B_MAX * crystal["rise"][None, :] * q_tilde[:, None] ** 2)
    z = (families["change"].values - predicted) / families["change_error"].values
    assert np.sqrt(np.mean(z**2)) == pytest.approx(1, abs=0.3)


def test_debye_waller_time_zero_and_rise_time(crystal, peaks):
    """⟨Δu²⟩(t) from the averaged families: late delays within 5 % and 2σ; its fit gives time
    zero within 0.05 ps, the time constant within 5 %, each within 2σ; shifting time zero
    moves the delays."""
    ds = crystal["ds"].ued.calibrate_q(peaks[1])
    msd = ds.ued.debye_waller(ds.ued.peak_traces(lattice=GRAPHITE, average=True)).compute()
    truth = MSD_MAX * crystal["rise"]
    assert msd["msd"].attrs["units"] == "Å²"
    late = msd["delay"].values >= 4
    assert (np.abs(msd["msd"].values[late] / truth[late] - 1) < 0.05).all()
    assert (np.abs(msd["msd"].values - truth) < 2 * msd["msd_error"].values).mean() > 0.85
    z = (msd["msd"].values - truth) / msd["msd_error"].values
    assert np.sqrt(np.mean(z**2)) == pytest.approx(1, abs=0.35)
    fit = ds.ued.fit(msd, var="msd")
    assert abs(fit["t0"] - T0) < min(0.05, 2 * fit.errors["t0"])
    assert abs(fit["tau"] / TAU - 1) < 0.05 and abs(fit["tau"] - TAU) < 2 * fit.errors["tau"]
    assert abs(fit["amplitude"] / MSD_MAX - 1) < 0.05
    assert abs(fit["amplitude"] - MSD_MAX) < 2 * fit.errors["amplitude"]
    t0, error = ds.ued.find_time_zero(msd, var="msd")
    assert abs(t0 - T0) < 2 * error
    shifted = ds.ued.shift_time_zero(t0)
    np.testing.assert_allclose(shifted["delay"].values, np.array(DELAYS) - t0)
    # the delays before the found time zero are those before 0.3 ps: the same equilibrium
    assert shifted["radial_change"] is not None and shifted.ued.q_calibration is not None


def test_debye_waller_per_peak_with_an_intercept(crystal, peaks):
    traces, _ = peaks
    msd = crystal["ds"].ued.debye_waller(traces, intercept=True)
    truth = MSD_MAX * crystal["rise"]
    late = msd["delay"].values >= 4
    assert (np.abs(msd["msd"].values[late] / truth[late] - 1) < 0.05).all()
    assert (np.abs(msd["intercept"]) < 3 * msd["intercept_error"]).mean() > 0.8
    with pytest.raises(ValueError, match="q coordinate"):
        crystal["ds"].ued.debye_waller(traces.drop_vars("q"))


def test_diffuse_traces_per_brillouin_zone(crystal):
    """The mean diffuse intensity of each zone against the noise-free frames over the same
    pixels (background rising by 10 %, the detector's dark level staying): z RMS within
    1 ± 0.3."""
    ds, truth = crystal["ds"], crystal["truth"]
    equilibrium, valid = ds["equilibrium"].values, ds["mask"].values
    center = ds["center"].values
    found = np.array(bragg_peaks(np.where(valid, equilibrium, 0), mask=valid, center=center))
    diffuse = ds.ued.diffuse_traces(found, symmetry=6)
    assert isinstance(diffuse["intensity"].data, da.Array)
    diffuse = diffuse.compute()
    assert diffuse.sizes["zone"] > 20 and (diffuse["pixels"] > 100).all()
    # the zones, as the documentation says they are made
    zones = brillouin_zones(equilibrium, valid, found, center=center).getVisibleBZs(symmetry=6)
    regions = zone_regions(SHAPE, [z.visible_vertices for z in zones],
                           np.vstack([center, found]), diffuse.attrs["exclude"], valid)
    by_centre = {tuple(np.round(z.center, 3)): region for z, region in zip(zones, regions,
                                                                            strict=True)}
    r = crystal["rise"]
    frames = np.stack([diffraction_pattern(SHAPE, center, kind="single_crystal",
                                           debye_waller=B_MAX * x, background=1 + DIFFUSE * x,
                                           intensity=truth["counts"]).ravel()
                       for x in r]) + truth["dark_level"]
    before = np.array(DELAYS) < 0
    z = []
    for k in range(diffuse.sizes["zone"]):
        one = diffuse.isel(zone=k)
        region = by_centre[(round(float(one["row"]), 3), round(float(one["col"]), 3))]
        assert len(region) == one["pixels"]
        expected = frames[:, region].mean(axis=1)
        expected = expected / expected[before].mean() - 1
        z.append((one["change"].values - expected) / one["change_error"].values)
    z = np.array(z)
    assert np.sqrt(np.mean(z**2)) == pytest.approx(1, abs=0.3)
    assert diffuse["change"].sel(delay=10).mean() > 0.08  # the diffuse rises


def test_traces_are_lazy_until_computed(crystal):
    """Making the traces reads the small variables (equilibrium, mask, centre) only; the
    movie is read by .compute()."""
    ds = crystal["ds"]
    read = []

    class Recorder(Callback):
        def _pretask(self, key, dsk, state):
            read.append(str(key))

    calibrated = ds.ued.calibrate_q(QCalibration.from_geometry(100, 0.5, 50e-6))
    with Recorder():
        traces = calibrated.ued.peak_traces()
        msd = calibrated.ued.debye_waller(traces)
        diffuse = ds.ued.diffuse_traces()
        assert read and not any("diffraction" in key for key in read), read[:5]
        for result in (traces["change"], msd["msd"], diffuse["change"]):
            assert isinstance(result.data, da.Array)
        traces["change"].compute()
    assert any("diffraction" in key for key in read)


def test_bounded_memory_on_a_large_lazy_movie():
    """Peak traces of a lazy 512² movie, one delay per chunk: the traced peak memory of 48
    delays is that of 12 (it does not grow with the movie), below a quarter of the movie."""
    import tracemalloc

    size = 512
    pattern = diffraction_pattern((size, size), kind="single_crystal", background=0.2)
    center = np.array([0.47 * size + 0.3, 0.53 * size - 0.2])
    found = np.array(bragg_peaks(pattern, center=center))[:60]

    def peak_memory(n):
        def frame(block_info=None):
            i = block_info[None]["chunk-location"][0]
            return (pattern * (1 - 0.001 * i)).astype(np.float32)[None]

        movie = da.map_blocks(frame, dtype=np.float32, chunks=((1,) * n, (size,), (size,)))
        ds = xr.Dataset({"diffraction": (("delay", "y", "x"), movie),
                         "diffraction_error": (("delay", "y", "x"), da.sqrt(movie + 1)),
                         "equilibrium": (("y", "x"), pattern.astype(np.float32)),
                         "center": ("coord", center)},
                        coords={"delay": np.linspace(-1, 10, n), "coord": ["row", "col"]})
        traces = ds.ued.peak_traces(found)
        tracemalloc.start()
        with dask.config.set(scheduler="synchronous"):
            change = traces["change"].compute()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        np.testing.assert_allclose(change.isel(delay=-1), (1 - 0.001 * (n - 1)) *
                                   (1 + change.isel(delay=0)) - 1, atol=1e-6)
        return peak

    small, large = peak_memory(12), peak_memory(48)
    assert large < 1.25 * small + 2**20, (small, large)
    assert large < 0.25 * 48 * size * size * 4, large


# ------------------------------------------------------------------ the command line

def test_cli_peaks(crystal, capsys):
    store, folder = crystal["root"] / "reduced.zarr", crystal["root"] / "peaks"
    lattice = ["--lattice", "2.46", "2.46", "6.71", "90", "90", "120"]
    assert main(["peaks", str(store), "-o", str(folder), *lattice]) == 0
    out = capsys.readouterr().out
    assert "q scale from the indexed peaks" in out and "{1 0 0}" in out
    traces = crystal["ds"].ued.peak_traces(lattice=GRAPHITE).compute()
    table = pd.read_csv(folder / "peaks.csv", comment="#")
    assert len(table) == traces.sizes["peak"]
    np.testing.assert_allclose(table["equilibrium"], traces["equilibrium"].values, rtol=1e-12)
    np.testing.assert_array_equal(table[["h", "k", "l"]], np.stack(
        [traces[name].values for name in "hkl"], axis=1))
    series = pd.read_csv(folder / "peak_traces.csv", comment="#")
    np.testing.assert_allclose(series["change[5]"], traces["change"].sel(peak=5).values,
                               rtol=1e-12)
    assert matplotlib.image.imread(folder / "peaks.png").shape[2] in (3, 4)
    before = (folder / "peaks.csv").read_bytes()
    assert main(["peaks", str(store), "-o", str(folder)]) == 2
    assert "exist; pass --overwrite" in capsys.readouterr().err
    assert (folder / "peaks.csv").read_bytes() == before
    assert main(["peaks", str(store), "-o", str(folder), "--energy", "100"]) == 2
    assert "go together" in capsys.readouterr().err


def test_cli_fit(crystal, capsys, tmp_path):
    store = str(crystal["root"] / "reduced.zarr")
    ds = crystal["ds"]
    assert main(["fit", store, "--region", "ring:70,84", "-o", str(tmp_path / "fit.png")]) == 0
    out = capsys.readouterr().out
    trace = ds.ued.time_series(ring=(ds["center"].values, 70, 84), change=True)
    fit = ds.ued.fit(trace, var="change")
    assert f"tau        = {fit['tau']:.6g} ± {fit.errors['tau']:.2g}" in out
    assert (tmp_path / "fit.png").stat().st_size > 0
    assert main(["fit", store, "--region", "ring:70", "--irf", "0.3"]) == 2
    assert "expected ring:R1,R2" in capsys.readouterr().err
    assert main(["fit", store, "--region", "disk:120,130,3"]) == 2  # the beam block
    assert "holds no valid pixel" in capsys.readouterr().err
    assert main(["fit", store, "--region", "disk:143,148,4", "--irf", "0.3", "--t0",
                 "0.3"]) == 0  # a (100) peak
    out = capsys.readouterr().out
    assert "t0         = 0.3 ± 0 (fixed)" in out and "49 pixels" in out


def test_cli_export(crystal, capsys, tmp_path):
    store = str(crystal["root"] / "reduced.zarr")
    assert main(["export", store, "-o", str(tmp_path / "run.nxs")]) == 0
    back = open_hdf5(tmp_path / "run.nxs")
    ds = crystal["ds"]
    np.testing.assert_array_equal(back["diffraction"].values, ds["diffraction"].values)
    assert back["diffraction"].attrs == ds["diffraction"].attrs
    assert back.attrs["uedflow"] == ds.attrs["uedflow"]
    assert main(["export", store, "-o", str(tmp_path / "profiles.csv")]) == 0
    table = pd.read_csv(tmp_path / "profiles.csv", comment="#")
    np.testing.assert_array_equal(table["radial_change[10]"],
                                  ds["radial_change"].sel(delay=10).values)
    assert main(["export", store, "-o", str(tmp_path / "run.nxs")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", store, "-o", str(tmp_path / "t.csv"), "--var", "total"]) == 0
    assert main(["export", store, "-o", str(tmp_path / "x.txt")]) == 2
