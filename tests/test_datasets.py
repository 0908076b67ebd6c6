"""Tests of uedflow.datasets: synthetic UED frames and runs with ground truth."""

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from uedflow import datasets as ds

SHAPE = (128, 128)


def _disc(shape, center, radius):
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    meta = ds.make_run(path, shape=SHAPE, n_scans=2, seed=3)
    return path, meta


# --- noise-free pattern -----------------------------------------------------------------


def test_default_center_is_off_centre_and_subpixel():
    c = np.array(ds.default_center((256, 300)))
    assert not np.allclose(c, [128, 150])
    assert np.all(c % 1 != 0)


@pytest.mark.parametrize("kind", ["polycrystalline", "single_crystal", "mixed"])
def test_pattern_is_float64_positive_and_finite(kind):
    p = ds.diffraction_pattern((96, 130), kind=kind)
    assert p.shape == (96, 130) and p.dtype == np.float64
    assert np.all(np.isfinite(p)) and p.min() > 0
    assert 500 < p.max() < 2000  # peak of the order of `intensity`


def test_bad_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        ds.diffraction_pattern(SHAPE, kind="amorphous")


def test_polycrystalline_centroid_is_center():
    shape = (256, 256)
    center = (120.37, 133.71)
    p = ds.diffraction_pattern(shape, center, kind="polycrystalline")
    disc = _disc(shape, center, 110)
    yy, xx = np.indices(shape)
    w = p * disc
    centroid = np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum()
    np.testing.assert_allclose(centroid, center, atol=0.05)


def test_rings_peak_at_given_radii():
    shape = (256, 256)
    center = (127.6, 128.2)
    radii = [40.0, 70.0]
    p = ds.diffraction_pattern(
        shape, center, kind="polycrystalline", ring_radii=radii, background=0
    )
    yy, xx = np.indices(shape)
    r = np.hypot(yy - center[0], xx - center[1])
    for radius in radii:
        assert p[np.abs(r - radius) < 0.5].mean() > 5 * p[np.abs(r - radius - 8) < 0.5].mean()


@pytest.mark.parametrize("kind", ["polycrystalline", "single_crystal", "mixed"])
def test_integer_translation_is_exact(kind):
    c = np.array([61.3, 66.8])
    d = np.array([3, -5])
    p0 = ds.diffraction_pattern(SHAPE, tuple(c), kind=kind)
    p1 = ds.diffraction_pattern(SHAPE, tuple(c + d), kind=kind)
    expected = ndimage.shift(p0, d, order=0, mode="constant", cval=np.nan)
    valid = np.isfinite(expected)
    assert valid.sum() > 0.9 * p0.size
    np.testing.assert_allclose(p1[valid], expected[valid], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["polycrystalline", "single_crystal"])
def test_subpixel_translation(kind):
    shape = (256, 256)
    c = np.array([120.3, 131.8])
    d = np.array([0.37, -0.61])
    p0 = ds.diffraction_pattern(shape, tuple(c), kind=kind)
    p1 = ds.diffraction_pattern(shape, tuple(c + d), kind=kind)
    shifted = ndimage.shift(p0, d, order=3, mode="nearest")
    inner = (slice(10, -10), slice(10, -10))
    err = np.abs(shifted[inner] - p1[inner]).max()
    assert err < 0.01 * p0.max()
    # and the shift is really visible: untranslated differs much more
    assert np.abs(p0[inner] - p1[inner]).max() > 5 * err


def test_single_crystal_sixfold_symmetry():
    shape = (256, 256)
    center = (126.4, 129.7)
    p = ds.diffraction_pattern(shape, center, kind="single_crystal", rotation_deg=17.0)
    yy, xx = np.indices(shape, dtype=float)
    dy, dx = yy - center[0], xx - center[1]
    a = np.deg2rad(60.0)
    coords = [
        center[0] + np.cos(a) * dy - np.sin(a) * dx,
        center[1] + np.sin(a) * dy + np.cos(a) * dx,
    ]
    rotated = ndimage.map_coordinates(p, coords, order=3)
    disc = _disc(shape, center, 110)
    corr = np.corrcoef(p[disc], rotated[disc])[0, 1]
    assert corr > 0.95
    # not trivially symmetric: a 30 degree rotation does not reproduce it
    a = np.deg2rad(30.0)
    coords = [
        center[0] + np.cos(a) * dy - np.sin(a) * dx,
        center[1] + np.sin(a) * dy + np.cos(a) * dx,
    ]
    rotated30 = ndimage.map_coordinates(p, coords, order=3)
    assert np.corrcoef(p[disc], rotated30[disc])[0, 1] < 0.8


def test_debye_waller_lowers_bragg_and_ring_intensity():
    for kind in ("polycrystalline", "single_crystal"):
        cold = ds.diffraction_pattern(SHAPE, kind=kind, background=0)
        hot = ds.diffraction_pattern(SHAPE, kind=kind, debye_waller=1.0, background=0)
        assert np.all(hot <= cold + 1e-12)
        assert hot.sum() < 0.99 * cold.sum()
    with pytest.raises(ValueError):
        ds.diffraction_pattern(SHAPE, debye_waller=-1)


# --- beam block, hot pixels, frames -------------------------------------------------------


def test_beam_block_mask_geometry():
    shape = (200, 200)
    center = (110.4, 95.6)
    mask = ds.beam_block_mask(shape, center)
    assert mask.dtype == bool and mask.shape == shape
    assert not mask[110, 96]  # on the disc
    assert not mask[0, 96] and not mask[50, 96]  # on the stick
    assert mask[199, 96]  # below the disc
    assert mask[110, 96 + 20] and mask[110, 96 - 20]  # beside the disc (radius 12)
    assert mask[20, 96 + 12] and mask[20, 96 - 12]  # beside the stick (half-width 8)
    assert 0.02 < 1 - mask.mean() < 0.1


def test_hot_pixel_positions():
    hot = ds.hot_pixel_positions((256, 256), 7, seed=1)
    assert hot.shape == (7, 2)
    assert len({tuple(h) for h in hot.tolist()}) == 7
    assert np.all((hot >= 0) & (hot < 256))
    np.testing.assert_array_equal(hot, ds.hot_pixel_positions((256, 256), 7, seed=1))
    assert not np.array_equal(hot, ds.hot_pixel_positions((256, 256), 7, seed=2))


def test_make_frame_determinism_and_noise():
    a = ds.make_frame(SHAPE, seed=5)
    b = ds.make_frame(SHAPE, seed=5)
    c = ds.make_frame(SHAPE, seed=6)
    assert a.dtype == np.uint16 and a.shape == SHAPE
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Poisson noise: variance ~ mean in a flat, feature-free patch of many frames
    frames = np.stack(
        [
            ds.make_frame(SHAPE, seed=s, kind="polycrystalline", hot_pixels=[]).astype(float)
            for s in range(20)
        ]
    )
    patch = frames[:, 120:126, 2:8]
    ratio = patch.var(axis=0, ddof=1).mean() / patch.mean()
    assert 0.7 < ratio < 1.3


def test_make_frame_levels_beam_block_and_hot_pixels():
    shape = (256, 256)
    center = ds.default_center(shape)
    hot = [(5, 7), (200, 31)]
    f = ds.make_frame(shape, hot_pixels=hot, seed=1, dark=2.0)
    blocked = ~ds.beam_block_mask(shape, center)
    blocked[5, 7] = blocked[200, 31] = False
    valid = ~blocked
    valid[5, 7] = valid[200, 31] = False
    # dim, not black
    assert 0 < f[blocked].mean() < 0.1 * f[valid].mean()
    assert f[blocked].mean() > 2.5  # attenuated signal on top of the dark level of 2
    assert np.count_nonzero(f[blocked]) > 0.5 * blocked.sum()
    # hot pixels saturated
    assert f[5, 7] == 65535 and f[200, 31] == 65535
    # peaks are a few thousand counts, background tens
    assert 1000 < np.percentile(f[valid], 99.9) < 10000
    assert 10 < np.median(f[valid]) < 100


def test_make_frame_2048():
    f = ds.make_frame((2048, 2048), seed=0)
    assert f.shape == (2048, 2048) and f.dtype == np.uint16


# --- runs -------------------------------------------------------------------------------


def test_run_files_and_metadata(run):
    path, meta = run
    delays = meta["delays"]
    assert len(delays) == 12 and delays[0] < 0 < delays[-1]
    assert meta == ds.load_run_metadata(path)
    assert meta == json.loads((path / "run.json").read_text())
    assert meta["format"] == "uedflow-run" and meta["version"] == 1
    assert meta["dims"] == ["scan", "delay", "y", "x"]
    assert meta["shape"] == list(SHAPE) and meta["dtype"] == "uint16"
    assert meta["scans"] == [0, 1]
    tifs = sorted(p.name for p in path.glob("scan_*.tif"))
    assert len(tifs) == 2 * 12
    for s in range(2):
        for i in range(12):
            name = f"scan_{s:03d}_delay_{i:03d}.tif"
            assert meta["files"][s][i] == name
    assert tifs == sorted(n for row in meta["files"] for n in row)
    frame = tifffile.imread(path / meta["files"][1][5])
    assert frame.dtype == np.uint16 and frame.shape == SHAPE


def test_run_truth_consistency(run):
    path, meta = run
    truth = meta["truth"]
    center = np.array(truth["center"])
    centers = np.array(truth["centers"])
    shifts = np.array(truth["shifts"])
    assert centers.shape == shifts.shape == (2, 12, 2)
    np.testing.assert_array_equal(shifts, center - centers)
    assert len(truth["debye_waller"]) == 12
    mask = tifffile.imread(path / meta["mask_file"])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    expected = ds.beam_block_mask(SHAPE, truth["beam_block"]["center"])
    hot = np.array(truth["hot_pixels"])
    expected[hot[:, 0], hot[:, 1]] = False
    np.testing.assert_array_equal(mask.astype(bool), expected)
    assert truth["beam_block"]["center"] == truth["center"]


def test_run_frame_can_be_regenerated(run):
    path, meta = run
    t = meta["truth"]
    s, i = 1, 7
    frame = ds.make_frame(
        SHAPE,
        tuple(t["centers"][s][i]),
        kind=t["kind"],
        counts=t["counts"],
        seed=[t["seed"], 0, s, i],
        debye_waller=t["debye_waller"][i],
        background=t["background"][i],
        block_center=tuple(t["center"]),
        hot_pixels=t["hot_pixels"],
    )
    np.testing.assert_array_equal(frame, tifffile.imread(path / meta["files"][s][i]))


def test_run_drift_subpixel_and_bounded(run):
    _, meta = run
    shifts = np.array(meta["truth"]["shifts"])
    assert np.all(shifts % 1 != 0)
    assert np.abs(shifts).max() <= meta["truth"]["drift_bound"] + 1e-12
    assert np.abs(shifts).max() > 0.1
    # consecutive frames move by about `drift` px per step
    steps = np.diff(shifts.reshape(-1, 2), axis=0)
    assert 0.2 < steps.std() < 1.0
    # the frames really move: noise-free patterns at two recorded centres differ
    c = np.array(meta["truth"]["centers"])
    p0 = ds.diffraction_pattern(SHAPE, tuple(c[0, 0]))
    p1 = ds.diffraction_pattern(SHAPE, tuple(c[1, 3]))
    assert np.abs(p0 - p1).max() > 0.1 * p0.max()


def test_run_without_drift_has_zero_shifts(tmp_path):
    meta = ds.make_run(tmp_path, shape=(64, 64), delays=[-1, 1], n_scans=1, drift=0)
    assert np.all(np.array(meta["truth"]["shifts"]) == 0)


def test_run_hot_pixels_and_beam_block_are_fixed(run):
    path, meta = run
    truth = meta["truth"]
    hot = np.array(truth["hot_pixels"])
    blocked = ~ds.beam_block_mask(SHAPE, truth["center"])
    for name in (meta["files"][0][0], meta["files"][1][11]):
        f = tifffile.imread(path / name)
        assert np.all(f[hot[:, 0], hot[:, 1]] == 65535)
        assert 0 < f[blocked].mean() < 30


def test_run_intensity_drops_after_time_zero(run):
    path, meta = run
    truth = meta["truth"]
    delays = np.array(meta["delays"])
    dw = np.array(truth["debye_waller"])
    assert np.all(dw[delays <= 0] == 0) and np.all(np.diff(dw[delays > 0]) > 0)
    # measured on the frames: total counts in wide annuli around the two outer rings
    center = truth["center"]
    yy, xx = np.indices(SHAPE)
    r = np.hypot(yy - center[0], xx - center[1])
    m = min(SHAPE)
    annuli = (np.abs(r - 0.28 * m) < 6) | (np.abs(r - 0.35 * m) < 6)
    annuli &= ds.beam_block_mask(SHAPE, center)
    annuli[tuple(np.array(truth["hot_pixels"]).T)] = False

    def ring_counts(i):
        return np.mean(
            [tifffile.imread(path / meta["files"][s][i])[annuli].sum() for s in range(2)]
        )

    before = ring_counts(0)
    after = ring_counts(len(delays) - 1)
    assert after < 0.97 * before


def test_run_determinism(tmp_path):
    kw = {"shape": (64, 80), "delays": [-1.0, 0.5, 3.0], "n_scans": 2}
    m1 = ds.make_run(tmp_path / "a", seed=11, **kw)
    m2 = ds.make_run(tmp_path / "b", seed=11, **kw)
    m3 = ds.make_run(tmp_path / "c", seed=12, **kw)
    assert m1 == m2
    names = [n for row in m1["files"] for n in row] + ["mask.tif", "run.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert m3["truth"]["centers"] != m1["truth"]["centers"]
    f1 = tifffile.imread(tmp_path / "a" / names[0])
    f3 = tifffile.imread(tmp_path / "c" / names[0])
    assert not np.array_equal(f1, f3)


def test_run_other_dtype(tmp_path):
    meta = ds.make_run(tmp_path, shape=(64, 64), delays=[0.0], n_scans=1, dtype="float32")
    assert meta["dtype"] == "float32"
    assert tifffile.imread(tmp_path / meta["files"][0][0]).dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        ds.make_run(tmp_path / "x", shape=(64, 64), dtype="int8")


def test_overwrite_protection(tmp_path):
    path = tmp_path / "myrun"
    ds.make_run(path, shape=(64, 64), delays=[-1.0, 1.0, 2.0], n_scans=2)
    with pytest.raises(FileExistsError, match="myrun"):
        ds.make_run(path, shape=(64, 64), delays=[-1.0, 1.0], n_scans=1)
    meta = ds.make_run(path, shape=(64, 64), delays=[-1.0, 1.0], n_scans=1, overwrite=True)
    assert ds.load_run_metadata(path) == meta
    # stale frames of the replaced run are gone
    assert sorted(p.name for p in path.glob("scan_*.tif")) == meta["files"][0]


def test_load_run_metadata_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run\.json"):
        ds.load_run_metadata(tmp_path)


def test_demo_run(tmp_path):
    out = ds.demo_run(tmp_path / "demo", size=64)
    meta = ds.load_run_metadata(out)
    assert out == tmp_path / "demo"
    assert meta["shape"] == [64, 64] and meta["truth"]["seed"] == 0
    assert len(meta["files"]) == 2 and len(meta["files"][0]) == 12
    with pytest.raises(FileExistsError):
        ds.demo_run(out, size=64)
    assert ds.demo_run(out, size=64, overwrite=True) == out


def test_run_dark_frames_measure_the_dark_level(tmp_path):
    meta = ds.make_run(tmp_path, shape=(64, 64), delays=[-1.0, 1.0], n_scans=1, n_darks=3)
    truth = meta["truth"]
    assert truth["dark_level"] == ds.DARK_OFFSET
    darks = np.stack([tifffile.imread(tmp_path / f"dark_image/dark_{k:03d}.tif")
                      for k in range(3)])
    assert darks.dtype == np.uint16 and darks.shape == (3, 64, 64)
    hot = np.array(truth["hot_pixels"])
    assert np.all(darks[:, hot[:, 0], hot[:, 1]] == 65535)
    cold = np.ones((64, 64), bool)
    cold[hot[:, 0], hot[:, 1]] = False
    assert abs(darks[:, cold].mean() - truth["dark_level"]) < 0.2
    assert 2.5 < darks[:, cold].std() < 3.5  # read noise
    assert not np.array_equal(darks[0], darks[1])
    # every frame carries the same offset: it regenerates with dark=dark_level
    frame = ds.make_frame((64, 64), tuple(truth["centers"][0][1]), kind=truth["kind"],
                          counts=truth["counts"], seed=[truth["seed"], 0, 0, 1],
                          debye_waller=truth["debye_waller"][1],
                          background=truth["background"][1], block_center=tuple(truth["center"]),
                          hot_pixels=truth["hot_pixels"], dark=truth["dark_level"])
    np.testing.assert_array_equal(frame, tifffile.imread(tmp_path / meta["files"][0][1]))
    without = ds.make_run(tmp_path / "plain", shape=(64, 64), delays=[-1.0, 1.0], n_scans=1)
    assert without["truth"]["dark_level"] == 2.0 and not (tmp_path / "plain/dark_image").exists()


def test_run_lab_layout(tmp_path):
    meta = ds.make_run(tmp_path, shape=(64, 64), delays=[-0.25, 1.5, 12.0], n_scans=2,
                       layout="lab")
    assert meta["scans"] == [1, 2]
    assert meta["files"][1] == ["scan_0002/pumpon_-000.250ps.tif",
                                "scan_0002/pumpon_+001.500ps.tif",
                                "scan_0002/pumpon_+012.000ps.tif"]
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.tif"))
    assert names == sorted([f for row in meta["files"] for f in row] + [
        "mask.tif", "pump_off/pumpoff_0001.tif", "pump_off/pumpoff_0002.tif"])
    # same noise and drift as the uedflow layout: only the names differ
    flat = ds.make_run(tmp_path / "flat", shape=(64, 64), delays=[-0.25, 1.5, 12.0], n_scans=2)
    assert flat["truth"] == meta["truth"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / meta["files"][1][2]),
                                  tifffile.imread(tmp_path / "flat" / flat["files"][1][2]))
    # pump-off frames: equilibrium at the nominal centre
    off = tifffile.imread(tmp_path / "pump_off/pumpoff_0001.tif")
    expected = ds.make_frame((64, 64), tuple(meta["truth"]["center"]), seed=[0, 4, 0],
                             hot_pixels=meta["truth"]["hot_pixels"])
    np.testing.assert_array_equal(off, expected)
    with pytest.raises(ValueError, match="3 decimals"):
        ds.make_run(tmp_path / "x", shape=(64, 64), delays=[0.0, 0.1234], layout="lab")
    with pytest.raises(ValueError, match="layout"):
        ds.make_run(tmp_path / "y", shape=(64, 64), layout="flat")
    with pytest.raises(ValueError, match="n_darks"):
        ds.make_run(tmp_path / "z", shape=(64, 64), n_darks=-1)


def test_overwrite_removes_the_lab_layout_and_darks(tmp_path):
    ds.make_run(tmp_path, shape=(64, 64), delays=[-1.0, 1.0], n_scans=2, layout="lab", n_darks=2)
    meta = ds.make_run(tmp_path, shape=(64, 64), delays=[-1.0, 1.0], n_scans=1, overwrite=True)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == sorted(meta["files"][0] + ["mask.tif", "run.json"])
