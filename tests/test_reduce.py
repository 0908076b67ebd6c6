"""The run reduction: ReduceConfig, reduce() on a synthetic run with known truth, and
ds.ued.time_series()."""

import json
import multiprocessing
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor

import dask
import dask.array
import distributed
import numpy as np
import pytest
import tifffile
import xarray as xr

import uedflow
from uedflow.datasets import beam_block_mask, diffraction_pattern, make_frame, make_run
from uedflow.io.runs import open_run
from uedflow.pipeline import ReduceConfig, file_digest, reduce

SHAPE = (256, 256)
DELAYS = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0, 8.0]
BRIGHT = (4, 1)  # (delay index, scan) of a frame with 3x the intensity
JUMPED = (6, 2)  # of a frame whose pattern jumped by JUMP px
JUMP = (6.0, -5.0)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A run with darks, drift, hot pixels, a strong Debye-Waller drop and two bad frames."""
    path = tmp_path_factory.mktemp("reduce") / "run"
    meta = make_run(path, shape=SHAPE, delays=DELAYS, n_scans=3, drift=0.3, n_darks=4,
                    dw_amplitude=5.0, seed=1)
    truth = meta["truth"]
    files = np.array(meta["files"])  # (scan, delay)
    i, s = BRIGHT
    frame = tifffile.imread(path / files[s, i]).astype(float) * 3
    tifffile.imwrite(path / files[s, i], np.minimum(frame, 65535).astype(np.uint16))
    i, s = JUMPED
    center = np.array(truth["centers"][s][i]) + JUMP
    frame = make_frame(SHAPE, tuple(center), counts=truth["counts"], seed=[1, 9],
                       debye_waller=truth["debye_waller"][i], background=truth["background"][i],
                       block_center=tuple(truth["center"]), hot_pixels=truth["hot_pixels"],
                       dark=truth["dark_level"])
    tifffile.imwrite(path / files[s, i], frame)
    config = {"mask": {"file": str(path / meta["mask_file"])}}
    return {"path": path, "truth": truth, "config": config,
            "ds": reduce(open_run(path), config).compute()}


def rejected_frames(ds):
    return {(i, s) for i, s in np.argwhere(ds["rejected"].values)}


# ------------------------------------------------------------------ recovery of the truth

def test_recovers_center_and_shifts(sample):
    ds, truth = sample["ds"], sample["truth"]
    kept = ~ds["rejected"].values
    # every frame's own centre: the movie's centre minus the shift that moved the frame there
    own = ds["center"].values - ds["shifts"].values
    centers = np.array(truth["centers"]).transpose(1, 0, 2)  # (delay, scan, 2)
    assert np.abs(own - centers)[kept].max() <= 0.25
    # the reference is the first frame: the movie's centre is that frame's centre
    assert np.abs(ds["center"].values - centers[0, 0]).max() <= 0.25
    # shifts onto the reference differ from the truth's (onto the nominal centre) by a constant
    error = ds["shifts"].values[kept] - np.array(truth["shifts"]).transpose(1, 0, 2)[kept]
    error -= error.mean(axis=0)
    assert np.sqrt((error**2).sum(axis=-1).mean()) <= 0.05
    assert ds["shifts"].dims == ("delay", "scan", "coord")
    assert list(ds["coord"].values) == ["row", "col"]


def test_reference_of_the_earliest_delays(sample):
    config = {**sample["config"], "align": {"reference": "early", "early_delays": 2}}
    ds = reduce(open_run(sample["path"]), config)
    kept = ~ds["rejected"].values
    assert rejected_frames(ds) == {BRIGHT, JUMPED}
    own = ds["center"].values - ds["shifts"].values
    centers = np.array(sample["truth"]["centers"]).transpose(1, 0, 2)
    assert np.abs(own - centers)[kept].max() <= 0.25
    # aligned onto the first frame before averaging: the reference keeps its centre
    assert np.abs(ds["center"].values - centers[0, 0]).max() <= 0.25


def test_rejects_the_injected_frames_and_records_why(sample):
    ds = sample["ds"]
    assert rejected_frames(ds) == {BRIGHT, JUMPED}
    reasons = {(d, s): r for d, s, r in json.loads(ds.attrs["uedflow"])["rejected"]}
    assert "intensity" in reasons[DELAYS[BRIGHT[0]], BRIGHT[1]]
    assert "shift" in reasons[DELAYS[JUMPED[0]], JUMPED[1]]
    assert ds["scale"].values[BRIGHT] == 0 and ds["scale"].values[JUMPED] == 0
    # few pixels are cut across scans, and only in frames that take part
    cut = ds["rejected_pixels"].values
    assert cut[BRIGHT] == 0 and cut.max() < 0.01 * ds["mask"].values.sum()


def predicted_ring(ds, truth, i, ring):
    """Mean over ``ring`` of the noise-free pattern of delay ``i``: the default normalisation
    (within each delay) keeps the real change of intensity between delays."""
    pattern = diffraction_pattern(SHAPE, ds["center"].values, kind=truth["kind"],
                                  debye_waller=truth["debye_waller"][i],
                                  intensity=truth["counts"], background=truth["background"][i])
    return pattern[ring & ds["mask"].values].mean()


def test_recovers_the_debye_waller_dynamics(sample):
    ds, truth = sample["ds"], sample["truth"]
    r1, r2 = 0.28 * 256 - 7, 0.28 * 256 + 7  # the third ring, +-4 sigma
    series = ds.ued.time_series(ring=(ds["center"].values, r1, r2))["diffraction"].values
    recovered = series / series[:3].mean() - 1
    yy, xx = np.indices(SHAPE)
    row, col = ds["center"].values
    ring = (np.hypot(yy - row, xx - col) >= r1) & (np.hypot(yy - row, xx - col) <= r2)
    predicted = np.array([predicted_ring(ds, truth, i, ring) for i in range(len(DELAYS))])
    predicted = predicted / predicted[0] - 1
    assert predicted[-1] < -0.08  # a strong drop: the comparison means something
    np.testing.assert_allclose(recovered, predicted, atol=0.01)
    # the radial profiles show it too, as their relative change, within their errors
    window = slice(r1 + 4, r2 - 4)
    change = ds["radial_change"].sel(radius=window).mean("radius").values
    assert np.all(change[:3] == pytest.approx(0, abs=0.01)) and change[-1] < -0.08
    error = ds["radial_change_error"].sel(radius=window)
    assert (error > 0).all() and (error < 0.05).all()


def test_subtracts_the_darks(sample):
    """The equilibrium is a * pattern + b with b ~ 0 only if the 100-count offset is gone."""
    ds, truth = sample["ds"], sample["truth"]
    without = reduce(open_run(sample["path"]), {**sample["config"], "dark": {"subtract": False}})
    mask = ds["mask"].values
    pattern = diffraction_pattern(SHAPE, ds["center"].values, kind=truth["kind"],
                                  intensity=truth["counts"])[mask]
    design = np.stack([pattern, np.ones_like(pattern)], axis=1)
    offsets = [np.linalg.lstsq(design, eq["equilibrium"].values[mask], rcond=None)[0][1]
               for eq in (ds, without)]
    assert abs(offsets[0]) < 0.05 * truth["dark_level"]
    assert offsets[1] > 0.8 * truth["dark_level"]


# ------------------------------------------------------------------ outputs and options

def test_outputs_are_lazy_chunked_by_delay(sample):
    ds = reduce(open_run(sample["path"]), sample["config"])
    for name in ("diffraction", "radial", "radial_change", "delay_shifts", "rejected_pixels"):
        assert ds[name].chunks is not None and set(ds[name].chunks[0]) == {1}, name
    assert ds["diffraction"].dims == ("delay", "y", "x") and ds["diffraction"].dtype == np.float32
    for name in ("mask", "center", "shifts", "rejected", "total", "correlation", "scale",
                 "equilibrium"):
        assert ds[name].chunks is None, name
    provenance = json.loads(ds.attrs["uedflow"])
    assert ReduceConfig.from_dict(provenance["config"]) == ReduceConfig.from_dict(
        sample["config"])
    assert provenance["versions"]["uedflow"] == uedflow.__version__
    files = provenance["inputs"]["files"]
    assert len(files) == 3 * len(DELAYS) + 4 + 1  # frames, darks, mask file
    assert all(digest.startswith("sha256:") for digest in files.values())
    assert set(provenance["timing"]) >= {"registration_statistics", "equilibrium"}


def test_identical_on_every_scheduler(sample):
    results = []
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for options in ({"scheduler": "threads"}, {"scheduler": "synchronous"},
                        {"scheduler": "processes", "pool": pool}):
            with dask.config.set(options):
                results.append(reduce(open_run(sample["path"]), sample["config"]).compute())
    for other in results[1:]:
        for name, values in results[0].data_vars.items():
            np.testing.assert_array_equal(values.values, other[name].values, err_msg=name)


def test_missing_frames_and_excluded_scans(sample, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(sample["path"], path)
    (path / "scan_000_delay_003.tif").unlink()
    config = {**sample["config"], "reject": {"exclude_scans": [1]}}
    ds = reduce(open_run(path, missing="exclude"), config).compute()
    reasons = {(d, s): r for d, s, r in json.loads(ds.attrs["uedflow"])["rejected"]}
    assert reasons[DELAYS[3], 0] == ["missing"]
    assert all("excluded" in reasons[d, 1] for d in DELAYS)
    assert np.isnan(ds["shifts"].values[3, 0]).all()
    assert ds["rejected"].values[:, 1].all() and ds["rejected"].values[3, 0]
    assert np.isfinite(ds["diffraction"].values).all()


def test_symmetrize_and_baseline(sample):
    base = reduce(open_run(sample["path"]), sample["config"])
    config = {**sample["config"], "symmetrize": {"mod": 6},
              "baseline": {"method": "dwt", "max_iter": 20}}
    ds = reduce(open_run(sample["path"]), config)
    mask = base["mask"].values
    expected = uedflow.nfold(base["diffraction"][2].values, 6, base["center"].values[::-1],
                             mask).astype(np.float32)
    np.testing.assert_array_equal(ds["diffraction"][2].values, expected)
    baseline = ds["baseline"].values
    assert ds["baseline"].dims == ("delay", "radius") and np.isfinite(baseline).all()
    assert not np.array_equal(baseline, ds["radial"].values)
    np.testing.assert_array_equal(baseline[1], uedflow.baseline_dwt(ds["radial"].values[1], 20))


def test_time_series_regions(sample):
    ds = sample["ds"]
    images = ds["diffraction"].values.astype(np.float64)
    mask = ds["mask"].values
    region = np.zeros(SHAPE, dtype=bool)
    region[200:220, 30:60] = True
    expected = images[:, region & mask].mean(axis=1)
    series = ds.ued.time_series(rect=(200, 220, 30, 60))["diffraction"].values
    np.testing.assert_allclose(series, expected, rtol=1e-6)
    disk = ds.ued.time_series(disk=((128, 128), 200))["diffraction"].values
    np.testing.assert_allclose(disk, images[:, mask].mean(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="exactly one of rect, disk or ring"):
        ds.ued.time_series()
    with pytest.raises(ValueError, match="exactly one"):
        ds.ued.time_series(rect=(0, 5, 0, 5), disk=((5, 5), 2))
    with pytest.raises(ValueError, match="no valid pixel"):
        ds.ued.time_series(rect=(300, 310, 0, 5))
    with pytest.raises(ValueError, match="'radial' is not a variable"):
        ds.ued.time_series(rect=(0, 5, 0, 5), var="radial")


# ------------------------------------------------------------------ configuration

def test_config_round_trips_through_dict_json_and_toml(tmp_path):
    config = ReduceConfig.from_dict({"align": {"max_shift": 4, "reference": "early"},
                                     "normalize": {"ring": [20, 60]},
                                     "reject": {"exclude_scans": [0, 3]}})
    assert config.align.max_shift == 4 and config.normalize.ring == [20.0, 60.0]
    assert config.mask == ReduceConfig().mask  # untouched sections keep their defaults
    assert ReduceConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    toml = tmp_path / "reduce.toml"
    toml.write_text('[align]\nmax_shift = 4\nreference = "early"\n\n[normalize]\n'
                    'ring = [20, 60]\n\n[reject]\nexclude_scans = [0, 3]\n')
    assert ReduceConfig.from_toml(toml) == config


@pytest.mark.parametrize("bad, message", [
    ({"align": {"maxshift": 4}}, r"unknown key 'maxshift' in section \[align\]; valid keys: "
                                 r"enabled, reference, early_delays, max_shift"),
    ({"aling": {}}, r"unknown section \[aling\].*valid sections: dark, flat, mask"),
    ({"align": {"reference": "last"}}, r"\[align\] reference: expected one of"),
    ({"align": {"max_shift": -1}}, r"\[align\] max_shift: expected a number > 0"),
    ({"symmetrize": {"mod": 7}}, r"\[symmetrize\] mod: expected a divisor of 360"),
    ({"normalize": {"ring": [1]}}, r"\[normalize\] ring: expected 2 finite numbers"),
    ({"reject": {"exclude_scans": "1"}}, r"\[reject\] exclude_scans"),
    ({"align": 3}, r"\[align\] must be a table"),
])
def test_config_errors_name_the_key(bad, message):
    with pytest.raises(ValueError, match=message):
        ReduceConfig.from_dict(bad)


def test_toml_errors_name_the_file(tmp_path):
    toml = tmp_path / "reduce.toml"
    toml.write_text("[mask]\nfle = 'mask.tif'\n")
    with pytest.raises(ValueError, match=r"reduce.toml: unknown key 'fle' in section \[mask\]"):
        ReduceConfig.from_toml(toml)
    toml.write_text("[mask\n")
    with pytest.raises(ValueError, match="reduce.toml: not a valid TOML file"):
        ReduceConfig.from_toml(toml)


# ------------------------------------------------------------------ bad input

def test_bad_input_is_named(sample, tmp_path):
    run = open_run(sample["path"])
    with pytest.raises(ValueError, match="dims"):
        reduce(run.isel(scan=0))
    with pytest.raises(ValueError, match="no delay before time zero"):
        reduce(run, {**sample["config"], "dynamics": {"t0": -5.0}})
    small = tmp_path / "mask.tif"
    tifffile.imwrite(small, np.ones((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"\[mask\] file: .*mask.tif has shape \(10, 10\)"):
        reduce(run, {"mask": {"file": str(small)}})
    present = run["present"].values.copy()
    present[1] = False
    gone = run.assign_coords(present=(("delay", "scan"), present))
    with pytest.raises(ValueError, match=r"every frame of the delays \['-1'\] ps"):
        reduce(gone, sample["config"])
    with pytest.raises(ValueError, match="no frame left"):
        reduce(run, {**sample["config"], "reject": {"exclude_scans": [0, 1, 2]}})


def test_file_digest_covers_content_and_size(tmp_path):
    path = tmp_path / "frame.bin"
    path.write_bytes(bytes(300_000))
    first = file_digest(path)
    assert first == file_digest(path)
    data = bytearray(300_000)
    data[-1] = 1
    path.write_bytes(bytes(data))
    assert file_digest(path) != first
    path.write_bytes(bytes(299_999))
    assert file_digest(path) != first


def test_run_without_present_or_attrs(sample):
    """open_stack of a run directory: no present coordinate, no darks in attrs."""
    stack = uedflow.open_stack(sample["path"])
    assert "present" not in stack.coords
    ds = reduce(stack, sample["config"])
    assert rejected_frames(ds) == {BRIGHT, JUMPED}
    assert isinstance(ds, xr.Dataset) and json.loads(ds.attrs["uedflow"])["inputs"]["files"]


# ------------------------------------------------------------------ reads, progress, frame errors

class CountedReads:
    """An array of frames ``(delay, scan, y, x)`` that counts the reads of each frame."""

    def __init__(self, frames):
        self.frames, self.shape, self.dtype, self.ndim = frames, frames.shape, frames.dtype, 4
        self.reads = np.zeros(frames.shape[:2], int)

    def __getitem__(self, index):
        block = self.frames[index]
        if block.size:
            self.reads[index[:2]] += 1
        return block


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 128 x 128 run in memory (4 delays, 4 scans, darks on disk) and its config."""
    path = tmp_path_factory.mktemp("small") / "run"
    meta = make_run(path, shape=(128, 128), delays=[-1.0, 0.5, 1.0, 2.0], n_scans=4, drift=0.3,
                    n_darks=2, seed=3)
    run = open_run(path).load()
    return {"run": run, "truth": meta["truth"],
            "config": {"mask": {"file": str(path / meta["mask_file"])}}}


def counted(run):
    source = CountedReads(run.values)
    data = dask.array.from_array(source, chunks=(1, -1, -1, -1), asarray=False)
    return run.copy(data=data), source


def test_reads_the_run_once_for_the_analysis_and_once_for_the_outputs(small):
    run, source = counted(small["run"])
    ds = reduce(run, small["config"])
    # once for the sample of the mask (here every frame: fewer than SAMPLE), once for the
    # statistics, and the delay before time zero once more (its average, the equilibrium)
    expected = np.full(run.shape[:2], 2)
    expected[0] += 1
    np.testing.assert_array_equal(source.reads, expected)
    ds.compute()
    # the outputs read the other delays once: the equilibrium's average is not computed twice
    np.testing.assert_array_equal(source.reads, np.full(run.shape[:2], 3))
    assert not ds["rejected"].values.any()


def test_rejects_a_frame_unlike_the_others_by_its_correlation(small):
    truth = small["truth"]
    frames = small["run"].values.copy()
    center = truth["centers"][2][3]  # (scan, delay)
    other = make_frame((128, 128), tuple(center), kind="polycrystalline", counts=truth["counts"],
                       seed=[3, 99], block_center=tuple(truth["center"]), hot_pixels=[],
                       dark=truth["dark_level"]).astype(float)
    other *= frames[3, 2].sum(dtype=float) / other.sum()  # the same total: only its shape differs
    frames[3, 2] = np.rint(other)
    ds = reduce(small["run"].copy(data=frames), small["config"])
    assert rejected_frames(ds) == {(3, 2)}
    (reasons,) = json.loads(ds.attrs["uedflow"])["rejected"]
    assert reasons[:2] == [2.0, 2] and "correlation" in reasons[2]
    # each frame cut can be switched off in the TOML (false): the frame is kept
    off = reduce(small["run"].copy(data=frames),
                 {**small["config"], "reject": {"correlation_z": False}})
    assert rejected_frames(off) == set()


def test_intensity_and_shift_cuts_can_be_switched_off(small):
    frames = small["run"].values.copy()
    frames[1, 1] = frames[1, 1] * 3  # three times the counts: an intensity outlier
    run = small["run"].copy(data=frames)
    assert rejected_frames(reduce(run, small["config"])) == {(1, 1)}
    config = {**small["config"], "reject": {"intensity_z": False}}
    assert rejected_frames(reduce(run, config)) == set()
    frames = small["run"].values.copy()
    frames[2, 1] = np.roll(frames[2, 1], (4, -3), axis=(0, 1))  # a frame that jumped
    run = small["run"].copy(data=frames)
    # its beam block moved with it, so its correlation is off too: switch that cut off first
    config = {**small["config"], "reject": {"correlation_z": False}}
    ds = reduce(run, config)
    assert rejected_frames(ds) == {(2, 1)}
    assert json.loads(ds.attrs["uedflow"])["rejected"][0][2] == ["shift"]
    config["reject"]["shift_z"] = False
    assert rejected_frames(reduce(run, config)) == set()


def test_bad_bounds_are_named(small):
    with pytest.raises(ValueError, match=r"\[align\] max_shift: expected a number > 0, got None"):
        reduce(small["run"], {**small["config"], "align": {"max_shift": None}})
    with pytest.raises(ValueError, match=r"no valid pixel at least \[align\] max_shift = 60 px"):
        reduce(small["run"], {**small["config"], "align": {"max_shift": 60}})


def test_progress_names_each_step_on_threads_and_on_a_distributed_client(small, capsys):
    steps = ["reduce: mask and reference", "reduce: registration + frame statistics",
             "reduce: equilibrium"]
    local = reduce(small["run"], small["config"], progress=True)
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("reduce:")] == steps
    assert "Completed" in out  # dask's progress bar
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        capsys.readouterr()
        remote = reduce(small["run"], small["config"], progress=True).compute()
        out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("reduce:")] == steps
    assert "100% Completed" in out  # distributed's progress bar
    for name, values in local.compute().data_vars.items():
        np.testing.assert_array_equal(values.values, remote[name].values, err_msg=name)


# ------------------------------------------------------------------ physics of the defaults

def with_gain(run, factors, dark_level):
    """``run`` with the beam intensity of every delay multiplied by ``factors`` (the dark
    offset kept): a real change of the total intensity between delays."""
    frames = run.values.astype(float) - dark_level
    frames *= np.asarray(factors, float)[:, None, None, None]
    return run.copy(data=np.rint(frames + dark_level).astype(np.float32))


def test_normalisation_keeps_a_real_change_of_intensity_between_delays(small):
    """Within each delay (the default), a 20 % rise of every frame of the last delay is
    kept as ΔI/I = +20 % on top of the dynamics; across the run ("run"), it is divided out."""
    base = reduce(small["run"], small["config"]).compute()
    factors = [1.0, 1.0, 1.0, 1.2]
    run = with_gain(small["run"], factors, small["truth"]["dark_level"])
    kept = reduce(run, small["config"]).compute()
    flat = reduce(run, {**small["config"], "normalize": {"mode": "run"}}).compute()
    mask = base["radial_change_error"].values[-1] < 0.02
    expected = (1 + base["radial_change"].values[-1]) * 1.2 - 1
    np.testing.assert_allclose(kept["radial_change"].values[-1][mask], expected[mask],
                               atol=0.01)
    assert abs(np.median(flat["radial_change"].values[-1][mask] - expected[mask])) > 0.1
    # and the beam fluctuations within a delay are still normalised out
    assert np.ptp(kept["scale"].values[-1]) < 0.05


def test_frames_with_nan_on_valid_pixels_are_rejected_and_named(small):
    frames = small["run"].values.astype(np.float32)
    frames[2, 1] = np.nan
    frames[1, 3, 40:50, 60:70] = np.nan  # a NaN patch in one frame
    ds = reduce(small["run"].copy(data=frames), small["config"])
    assert rejected_frames(ds) == {(2, 1), (1, 3)}
    provenance = json.loads(ds.attrs["uedflow"])
    named = {name: why for name, why in provenance["rejected_files"].items()}
    assert any("scan_001_delay_002.tif" in name and why == ["nonfinite"]
               for name, why in named.items())
    assert np.isfinite(ds["diffraction"].values[:, ds["mask"].values]).all()


def test_nan_pixels_covered_by_the_mask_just_work(small, tmp_path):
    """Float frames with NaN at the same dead pixels in every frame, masked by a file."""
    frames = small["run"].values.astype(np.float32)
    frames[..., 70:72, :] = np.nan
    mask = tifffile.imread(small["config"]["mask"]["file"]).astype(np.uint8)
    mask[70:72, :] = 0
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    ds = reduce(small["run"].copy(data=frames), {"mask": {"file": str(tmp_path / "mask.tif")}})
    assert not ds["rejected"].values.any()
    assert not ds["mask"].values[70:72].any() and ds["mask"].values.mean() > 0.8


def test_an_empty_first_frame_is_not_the_reference(small):
    frames = small["run"].values.copy()
    frames[0, 0] = 0
    ds = reduce(small["run"].copy(data=frames), small["config"])
    provenance = json.loads(ds.attrs["uedflow"])
    assert provenance["reference_frame"].startswith("delay=-1, scan=1")
    assert (0, 0) in rejected_frames(ds)


def test_units_and_long_names_on_every_variable_and_coordinate(small):
    ds = reduce(small["run"], small["config"])
    for name in (*ds.data_vars, *ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds["delay"].attrs["units"] == "ps" and ds["radius"].attrs["units"] == "px"
    assert ds["radial_change"].attrs["units"] == "1"


def test_mask_parts_are_recorded(small):
    ds = reduce(small["run"], small["config"])
    parts = json.loads(ds.attrs["uedflow"])["mask"]
    mask = ds["mask"].values
    assert parts["total"] == pytest.approx(1 - mask.mean(), abs=1e-6)
    assert parts["file"] > 0 and parts["total"] >= parts["file"]
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"),
                                           abs=1e-5)


def test_beam_block_found_without_a_mask_file(tmp_path):
    """No mask file: the beam block is found from the structure of the mean pattern, and
    isolated hot pixels cost only themselves, not squares as wide as the drift."""
    path = tmp_path / "run"
    meta = make_run(path, shape=(256, 256), delays=[-1.0, 1.0, 2.0], n_scans=4, drift=0.5,
                    n_darks=2, seed=4)
    (path / "mask.tif").unlink()
    block = ~beam_block_mask((256, 256), tuple(meta["truth"]["center"]))
    ds = reduce(open_run(path))
    mask = ds["mask"].values
    assert not (mask & block).sum() > 0.01 * block.sum()
    assert (~mask).mean() <= 2 * (block.mean() + 1e-3)
    assert json.loads(ds.attrs["uedflow"])["mask"]["beam_block"] > 0.5 * block.mean()


def test_errors_are_the_spread_of_the_kept_scans(small):
    ds = reduce(small["run"], small["config"]).compute()
    error = ds["diffraction_error"].values
    mask = ds["mask"].values
    assert np.isfinite(error[:, mask]).all() and np.isnan(error[:, ~mask]).all()
    assert (ds["radial_error"].values > 0).all()
    assert (ds["error_correlation"].values >= 1).all() and (ds["error_correlation"] <= 4).all()


def test_pump_off_reference(tmp_path):
    path = tmp_path / "run"
    make_run(path, shape=(128, 128), delays=[-1.0, 0.5, 1.0, 4.0], n_scans=4, drift=0.3,
             n_darks=2, seed=6, layout="lab", dw_amplitude=4.0)
    run = open_run(path)
    assert len(run.attrs["pump_off"]) == 4
    before = reduce(run).compute()
    off = reduce(run, {"dynamics": {"reference": "pump_off"}}).compute()
    assert {"pump_off", "pump_off_error"} <= set(before.data_vars)
    provenance = json.loads(off.attrs["uedflow"])
    assert all(f in provenance["inputs"]["files"] for f in run.attrs["pump_off"])
    np.testing.assert_array_equal(off["equilibrium"].values, off["pump_off"].values)
    # both references see the same dynamics, within the errors
    window = slice(30, 40)
    a = before["radial_change"].sel(radius=window).mean("radius").values
    b = off["radial_change"].sel(radius=window).mean("radius").values
    e = off["radial_change_error"].sel(radius=window).mean("radius").values
    assert a[-1] < -0.05 and np.all(np.abs(a - b) < 4 * e + 0.005)


def test_bit_identical_on_threads_and_worker_processes(small):
    """Frame statistics use no BLAS: worker processes (one BLAS thread each) give the same
    bits as threads."""
    local = reduce(small["run"], small["config"]).compute()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        remote = reduce(small["run"], small["config"]).compute()
    for name, values in local.data_vars.items():
        np.testing.assert_array_equal(values.values, remote[name].values, err_msg=name)


def test_a_slow_drift_over_the_run_is_not_a_jump(tmp_path):
    """The centre wanders by up to 6 px over the run (a random walk, scan after scan): no
    frame is rejected for its shift, and the shifts follow the truth."""
    path = tmp_path / "run"
    meta = make_run(path, shape=(128, 128), delays=[-1.0, 0.5, 1.0, 2.0], n_scans=6,
                    drift=1.5, n_darks=2, seed=8)
    ds = reduce(open_run(path))
    assert not ds["rejected"].values.any(), json.loads(ds.attrs["uedflow"])["rejected"]
    true = np.array(meta["truth"]["shifts"]).transpose(1, 0, 2)
    assert np.ptp(true, axis=(0, 1)).max() > 4  # the drift is large
    error = ds["shifts"].values - true
    error -= error.mean(axis=(0, 1))
    assert np.abs(error).max() < 0.2


def test_tasks_of_fewer_scans_give_the_same_reduction(small, monkeypatch):
    """Groups of 1 or 3 scans per task, merged, against all 4 scans of a delay in one task:
    the same rejections and shifts, and the same averages to float rounding."""
    whole = reduce(small["run"], small["config"]).compute()
    for group in (1, 3):
        monkeypatch.setattr(sys.modules["uedflow.pipeline.reduce"], "GROUP", group)
        split = reduce(small["run"].chunk({"scan": 1}), small["config"])
        assert split["diffraction"].data.numblocks == (4, 1, 1)
        split = split.compute()
        for name in ("shifts", "rejected", "scale", "rejected_pixels", "center"):
            np.testing.assert_array_equal(split[name].values, whole[name].values, err_msg=name)
        for name in ("diffraction", "diffraction_error", "radial", "radial_error",
                     "equilibrium"):
            np.testing.assert_allclose(split[name].values, whole[name].values, rtol=1e-5,
                                       atol=1e-5, equal_nan=True, err_msg=name)


def test_a_task_memory_too_small_for_one_frame_is_refused_before_reading():
    frames = dask.array.zeros((1, 1, 4096, 4096), dtype=np.uint16, chunks=-1)
    run = xr.DataArray(frames, dims=("delay", "scan", "y", "x"),
                       coords={"delay": [-1.0], "scan": [0]})
    with pytest.raises(ValueError, match=r"\[compute\] task_memory: 67108864 bytes do not hold"):
        reduce(run, {"compute": {"task_memory": "64 MiB"}, "mask": {"file": False}})
