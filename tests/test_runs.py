"""open_run / scan_run: raw runs from file names, patterns, presets, bad input."""

import json
import re
import shutil

import numpy as np
import pytest
import tifffile

from uedflow import CorruptFileError, open_stack
from uedflow.datasets import make_run
from uedflow.io import RunFiles, open_run, scan_run
from uedflow.io.runs import is_run, read_delay_table

SHAPE = (64, 64)
DELAYS = [-1.0, 0.0, 0.25, 1.5]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A uedflow-layout and a lab-layout run, 4 delays x 2 scans, 2 dark frames each."""
    root = tmp_path_factory.mktemp("runs")
    kw = {"shape": SHAPE, "delays": DELAYS, "n_scans": 2, "n_darks": 2, "seed": 7}
    return {layout: (root / layout, make_run(root / layout, layout=layout, **kw))
            for layout in ("uedflow", "lab")}


@pytest.fixture
def lab(runs, tmp_path):
    """A copy of the lab run, free to change, and its truth."""
    path, truth = runs["lab"]
    shutil.copytree(path, tmp_path / "lab")
    return tmp_path / "lab", truth


def _frames(path, truth):
    """The frames as written, ``(delay, scan, y, x)``."""
    files = np.array(truth["files"]).T
    return np.stack([[tifffile.imread(path / f) for f in row] for row in files])


@pytest.mark.parametrize("layout", ["uedflow", "lab"])
def test_layouts_round_trip(runs, layout):
    path, truth = runs[layout]
    run = open_run(path)
    assert run.dims == ("delay", "scan", "y", "x") and run.name == "intensity"
    assert run.delay.dtype == np.float64 and run.delay.attrs["units"] == "ps"
    assert run.delay.values.tolist() == DELAYS
    assert run.scan.dtype == np.int64 and run.scan.values.tolist() == truth["scans"]
    assert run.scan.values.tolist() == ([1, 2] if layout == "lab" else [0, 1])
    np.testing.assert_array_equal(run.values, _frames(path, truth))
    expected_files = np.array([[str(path / f) for f in row] for row in truth["files"]]).T
    np.testing.assert_array_equal(run.file.values, expected_files)
    assert run.present.values.all()
    assert run.attrs["source"] == str(path)
    assert run.attrs["pattern"] == ("scan_{scan}/pumpon_{delay}ps.tif" if layout == "lab"
                                    else "scan_{scan}_delay_{delay_index}.tif")
    assert run.attrs["darks"] == [str(path / f"dark_image/dark_{k:03d}.tif") for k in (0, 1)]
    assert run.attrs["pump_off"] == ([str(path / f"pump_off/pumpoff_{s:04d}.tif")
                                      for s in (1, 2)] if layout == "lab" else [])
    assert run.attrs["missing"] == run.attrs["bad_files"] == run.attrs["flats"] == []
    assert json.loads(json.dumps(run.attrs)) == run.attrs
    # the same values and labels as open_stack of the run directory (its run.json)
    stack = open_stack(path)
    np.testing.assert_array_equal(run.values, stack.values)
    np.testing.assert_array_equal(run.delay.values, stack.delay.values)
    np.testing.assert_array_equal(run.scan.values, stack.scan.values)


def test_is_run_knows_run_layouts_from_other_folders(runs, tmp_path):
    assert is_run(runs["uedflow"][0]) and is_run(runs["lab"][0])
    tifffile.imwrite(tmp_path / "frame_001.tif", np.zeros(SHAPE, np.uint16))
    assert not is_run(tmp_path)
    assert not is_run(tmp_path / "frame_001.tif")
    assert not is_run(tmp_path / "absent")


def test_scan_run_lists_files_by_role(lab):
    path, _ = lab
    (path / "flat_field").mkdir()
    tifffile.imwrite(path / "flat_field" / "gain.tif", np.ones(SHAPE, np.float32))
    found = scan_run(path, preset="lab")
    assert isinstance(found, RunFiles)
    assert found.root == path and found.delays == DELAYS and found.scans == [1, 2]
    assert found.frames[(1.5, 2)] == path / "scan_0002" / "pumpon_+001.500ps.tif"
    assert len(found.frames) == 8 and found.missing == [] and found.unmatched == []
    assert found.flats == [path / "flat_field" / "gain.tif"]
    assert [p.name for p in found.darks] == ["dark_000.tif", "dark_001.tif"]
    assert [p.name for p in found.pump_off] == ["pumpoff_0001.tif", "pumpoff_0002.tif"]


def test_custom_pattern_units_wildcards_and_one_scan(tmp_path):
    frames = {}
    for k, (name, delay) in enumerate([("-250", -0.25), ("+1500", 1.5), ("0", 0.0)]):
        frames[delay] = np.full((16, 16), k, np.uint16)
        tifffile.imwrite(tmp_path / f"img{k}_t{name}fs_x.tif", frames[delay])
    (tmp_path / "darks").mkdir()
    tifffile.imwrite(tmp_path / "darks" / "d.tif", np.zeros((16, 16), np.uint16))
    run = open_run(tmp_path, {"frames": "img*_t{delay:fs}fs_*.tif", "darks": "darks/*.tif"})
    assert run.delay.values.tolist() == [-0.25, 0.0, 1.5]
    assert run.scan.values.tolist() == [0]
    np.testing.assert_array_equal(run.values[:, 0], [frames[d] for d in (-0.25, 0.0, 1.5)])
    assert run.attrs["darks"] == [str(tmp_path / "darks" / "d.tif")]


@pytest.mark.parametrize("name, delay", [
    ("+001.500", 1.5), ("-0.250", -0.25), ("12", 12.0), (".5", 0.5), ("-000.000", 0.0)])
def test_delay_field_parses_signed_decimals(tmp_path, name, delay):
    tifffile.imwrite(tmp_path / f"scan_7_{name}ps.tif", np.zeros((16, 16), np.uint8))
    found = scan_run(tmp_path, "scan_{scan}_{delay}ps.tif")
    assert list(found.frames) == [(delay, 7)]
    assert repr(found.delays) == repr([delay])  # "-000.000" is 0.0, not -0.0


@pytest.mark.parametrize("pattern, message", [
    ("scan_{scan}/{delay}_{foo}.tif", r"Unknown field \{foo\}.*\{delay\}, \{delay_index\}"),
    ("{delay}_{delay}.tif", r"\{delay\} appears twice"),
    ("{scan:fs}_{delay}.tif", r"only \{delay\} takes a unit"),
    ("{delay:min}.tif", r"fs, ps, ns"),
    ("scan_{scan}.tif", r"needs one of \{delay\}, \{delay_index\} or \{position\}"),
    ({"darks": "dark_{scan}.tif"}, r"darks pattern 'dark_\{scan\}.tif' takes no fields"),
    ({"bright": "b.tif"}, r"Unknown pattern role.*bright.*frames"),
])
def test_bad_patterns(runs, pattern, message):
    with pytest.raises(ValueError, match=message):
        scan_run(runs["lab"][0], pattern)


def test_bad_preset_and_missing_argument(runs):
    with pytest.raises(ValueError, match=r"Unknown preset 'nope'.*'auto', 'uedflow', 'lab'"):
        scan_run(runs["lab"][0], preset="nope")
    with pytest.raises(ValueError, match="missing must be"):
        open_run(runs["lab"][0], missing="zero")


def test_missing_combination_raises_or_is_flagged(lab):
    path, truth = lab
    expected = _frames(path, truth)
    (path / "scan_0002" / "pumpon_+000.250ps.tif").unlink()
    with pytest.raises(ValueError, match=r"1 \(delay, scan\).*\(0.25 ps, scan 2\).*exclude"):
        open_run(path)
    run = open_run(path, missing="exclude")
    assert run.shape == (4, 2, *SHAPE)
    assert run.present.values.tolist() == [[True, True], [True, True], [True, False],
                                           [True, True]]
    assert run.file.values[2, 1] == "" and run.file.values[2, 0].endswith("+000.250ps.tif")
    assert run.attrs["missing"] == [[0.25, 2]]
    values = run.values
    assert not values[2, 1].any()
    values[2, 1] = expected[2, 1]
    np.testing.assert_array_equal(values, expected)


def test_missing_scan_of_a_uedflow_run(runs, tmp_path):
    path, truth = runs["uedflow"]
    shutil.copytree(path, tmp_path / "u")
    for name in truth["files"][1]:
        (tmp_path / "u" / name).unlink()
    found = scan_run(tmp_path / "u")
    assert found.scans == [0, 1]  # from run.json, although no file of scan 1 is left
    assert found.missing == [(d, 1) for d in DELAYS]


def test_unparseable_names_are_reported(lab):
    path, _ = lab
    tifffile.imwrite(path / "scan_0001" / "pumpon_late.tif", np.zeros(SHAPE, np.uint16))
    (path / "scan_0001" / "notes.txt").write_text("not an image")
    found = scan_run(path)
    assert found.unmatched == [path / "scan_0001" / "pumpon_late.tif"]
    with pytest.warns(UserWarning, match=r"1 image files.*pumpon_late\.tif"):
        run = open_run(path)
    assert run.attrs["unmatched"] == [str(path / "scan_0001" / "pumpon_late.tif")]
    # a misnamed frame: its combination is missing, and the error names the file
    (path / "scan_0002" / "pumpon_-001.000ps.tif").rename(path / "scan_0002" / "pumpon_-1ps.tf")
    (path / "scan_0002" / "pumpon_+000.000ps.tif").rename(path / "scan_0002" / "pumpon_0.tif")
    with pytest.raises(ValueError, match=r"\(0 ps, scan 2\).*match no pattern.*pumpon_0\.tif"):
        open_run(path)


def test_no_frame_matches(runs, tmp_path):
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((16, 16), np.uint16))
    with pytest.raises(FileNotFoundError,
                       match=r"No file under .* matches the pattern 'x_\{delay\}\.tif'; "
                             r"examples of names found: a\.tif, b\.tif"):
        open_run(tmp_path, "x_{delay}.tif")
    with pytest.raises(ValueError, match=r"No preset fits.*'uedflow'.*'lab'.*a\.tif, b\.tif"):
        open_run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"No file under .*scan_\{scan\}/pumpon"):
        open_run(runs["uedflow"][0], preset="lab")


def test_empty_and_absent_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run directory '.*empty' is empty"):
        (tmp_path / "empty").mkdir()
        open_run(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="absent"):
        open_run(tmp_path / "absent")


def test_two_files_with_the_same_delay_and_scan(lab):
    path, _ = lab
    folder = path / "scan_0001"
    shutil.copy(folder / "pumpon_+001.500ps.tif", folder / "pumpon_1.5ps.tif")
    files = scan_run(path)  # listed, for uedflow info
    first, second = folder / "pumpon_1.5ps.tif", folder / "pumpon_+001.500ps.tif"
    assert files.duplicates == [(1.5, 1, first, second)]  # in natural order
    assert files.frames[1.5, 1] == first
    with pytest.raises(ValueError, match=r"(?=.*delay 1.5 ps, scan 1: )(?=.*pumpon_1\.5ps\.tif)"
                                         r"(?=.*pumpon_\+001\.500ps\.tif)"):
        open_run(path)


def test_uedflow_preset_needs_its_manifest(runs, tmp_path):
    path, truth = runs["uedflow"]
    shutil.copytree(path, tmp_path / "u")
    shutil.copy(tmp_path / "u" / truth["files"][0][0], tmp_path / "u" / "scan_000_delay_009.tif")
    with pytest.raises(ValueError, match=r"scan_000_delay_009\.tif': delay index 9.*4 delays"):
        scan_run(tmp_path / "u")
    (tmp_path / "u" / "run.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"delay_index.*run\.json"):
        scan_run(tmp_path / "u", preset="uedflow")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_truncated_frame_raises_or_is_skipped(lab):
    path, truth = lab
    expected = _frames(path, truth)
    first = path / truth["files"][0][0]  # the first frame: the reference moves on
    _truncate(first)
    with pytest.raises(CorruptFileError, match=r"pumpon_-001\.000ps\.tif.*truncated"):
        open_run(path)
    run = open_run(path, skip_bad=True)
    assert [p for p, _ in run.attrs["bad_files"]] == [str(first)]
    assert "truncated" in run.attrs["bad_files"][0][1]
    assert run.file.values[0, 0] == str(first)  # the file is named, but not used
    assert not run.present.values[0, 0] and run.present.values.sum() == 7
    values = run.values
    assert not values[0, 0].any()
    values[0, 0] = expected[0, 0]
    np.testing.assert_array_equal(values, expected)
    assert json.loads(json.dumps(run.attrs)) == run.attrs


def test_every_frame_bad(tmp_path):
    for delay in (1, 2):
        tifffile.imwrite(tmp_path / f"t{delay}.tif", np.zeros((16, 16), np.uint16))
        _truncate(tmp_path / f"t{delay}.tif")
    with pytest.raises(ValueError, match=r"None of the 2 frame files is readable.*t1\.tif"):
        open_run(tmp_path, "t{delay}.tif", skip_bad=True)


def test_opening_reads_no_pixels_and_one_frame_reads_one_file(runs, reads):
    path, _ = runs["lab"]
    pixel_reads, files_read = reads.pixels, reads.files
    run = open_run(path, chunks=1)
    assert pixel_reads == [] and files_read == []
    assert run.data.chunks[:2] == ((1,) * 4, (1, 1))
    frame = run.sel(delay=0.25, scan=2).values
    assert pixel_reads and files_read == [str(path / "scan_0002" / "pumpon_+000.250ps.tif")]
    np.testing.assert_array_equal(frame, tifffile.imread(files_read[0]))


def test_chunks_and_deterministic_graph(runs):
    path, _ = runs["uedflow"]
    assert open_run(path).data.chunksize[:2] == (4, 2)  # default: whole frames, ~64 MiB
    assert open_run(path, chunks={"delay": 1, "scan": 2}).data.chunks[:2] == ((1,) * 4, (2,))
    assert open_run(path).data.name == open_run(path).data.name


def _unreadable(monkeypatch, *paths):
    """Listing or opening ``paths`` raises PermissionError, as it would after ``chmod 000``
    (the tests run as root, who may read anything)."""
    import builtins
    import os

    paths = {str(p) for p in paths}
    scandir, open_ = os.scandir, builtins.open

    def denied(path):
        if os.path.abspath(path) in paths:
            raise PermissionError(13, "Permission denied", str(path))

    def guarded_scandir(path="."):
        denied(path)
        return scandir(path)

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike):
            denied(file)
        return open_(file, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", guarded_scandir)
    monkeypatch.setattr(builtins, "open", guarded_open)


def test_unreadable_folder_stops_the_run_or_is_listed(lab, monkeypatch):
    path, _ = lab
    folder = path / "scan_0002"
    _unreadable(monkeypatch, folder)
    assert scan_run(path).unreadable == [(folder, "cannot list the folder (Permission denied)")]
    with pytest.raises(PermissionError, match=r"1 folders.*scan_0002: cannot list.*skip_bad"):
        open_run(path)
    run = open_run(path, skip_bad=True)
    assert run.scan.values.tolist() == [1]  # scan 2 is unknown: its folder was not listed
    assert run.attrs["bad_files"] == [[str(folder), "cannot list the folder (Permission "
                                                    "denied)"]]


def test_unreadable_frame_stops_the_run_or_is_listed(lab, monkeypatch):
    path, truth = lab
    frame = path / truth["files"][1][2]
    _unreadable(monkeypatch, frame)
    with pytest.raises(CorruptFileError, match=rf"{re.escape(frame.name)}: cannot be read \(Perm"):
        open_run(path)
    run = open_run(path, skip_bad=True)
    assert run.attrs["bad_files"] == [[str(frame), "cannot be read (Permission denied)"]]
    assert run.present.values.sum() == 7 and not run.present.values[2, 1]


def test_unreadable_run_directory(lab, monkeypatch):
    path, _ = lab
    _unreadable(monkeypatch, path)
    with pytest.raises(PermissionError, match=r"run directory '.*lab' cannot be read"):
        scan_run(path)


def test_bad_dark_frame_stops_the_run_or_is_left_out(lab):
    path, _ = lab
    bad = path / "dark_image" / "dark_001.tif"
    _truncate(bad)
    with pytest.raises(CorruptFileError, match=r"dark_001\.tif.*truncated"):
        open_run(path)
    run = open_run(path, skip_bad=True)
    assert run.attrs["darks"] == [str(path / "dark_image" / "dark_000.tif")]
    assert [p for p, _ in run.attrs["bad_files"]] == [str(bad)]
    assert run.present.values.all()


def test_skip_bad_decodes_compressed_frames_at_open(tmp_path):
    """A compressed frame whose payload is damaged while its header is fine: found at open with
    skip_bad (listed, not present), found only when read without it."""
    frames = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    for k, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / f"t{k}.tif", frame, compression="zlib")
    bad = tmp_path / "t1.tif"
    with tifffile.TiffFile(bad) as tif:
        offset = tif.pages[0].dataoffsets[0]
    data = bytearray(bad.read_bytes())
    data[offset:offset + 8] = b"\xff" * 8
    bad.write_bytes(bytes(data))

    run = open_run(tmp_path, "t{delay}.tif", skip_bad=True)
    assert run.present.values[:, 0].tolist() == [True, False, True]
    (path, reason), = run.attrs["bad_files"]
    assert path == str(bad) and "cannot be read as TIFF" in reason
    np.testing.assert_array_equal(run.values[[0, 2], 0], frames[[0, 2]])

    run = open_run(tmp_path, "t{delay}.tif")  # headers only: the damage shows when read
    assert run.present.values.all()
    with pytest.raises(CorruptFileError, match=r"t1\.tif"):
        run.compute()


def test_uncompressed_frame_shorter_than_its_frame_is_bad(tmp_path):
    frame = np.ones((16, 16), np.uint16)
    for k in range(2):
        tifffile.imwrite(tmp_path / f"t{k}.tif", frame)
    bad = tmp_path / "t1.tif"
    with tifffile.TiffFile(bad) as tif:  # the strip byte count says less than the frame needs
        tag = tif.pages[0].tags["StripByteCounts"]
        offset, count = tag.valueoffset, tag.value
    count = count[0] if isinstance(count, tuple) else count
    data = bytearray(bad.read_bytes())
    data[offset:offset + 4] = (count // 2).to_bytes(4, "little")
    bad.write_bytes(bytes(data))
    run = open_run(tmp_path, "t{delay}.tif", skip_bad=True)
    assert run.present.values[:, 0].tolist() == [True, False]
    assert "16-bit samples needs 512" in run.attrs["bad_files"][0][1]


def test_float_frames_with_nan_under_the_mask_open(tmp_path):
    """Float frames whose NaN pixels the run's mask file covers open as they are."""
    rng = np.random.default_rng(5)
    mask = np.ones((24, 24), bool)
    mask[:4, :] = False
    frames = rng.random((2, 3, 24, 24)).astype(np.float32)
    frames[..., :4, :] = np.nan
    for s in range(3):
        (tmp_path / f"scan_{s + 1:04d}").mkdir()
        for d, delay in enumerate(["-001.000", "+001.000"]):
            tifffile.imwrite(tmp_path / f"scan_{s + 1:04d}" / f"pumpon_{delay}ps.tif",
                             frames[d, s])
    tifffile.imwrite(tmp_path / "mask.tif", mask.astype(np.uint8))
    for skip_bad in (False, True):
        run = open_run(tmp_path, skip_bad=skip_bad)
        assert run.dtype == np.float32 and run.present.values.all()
        assert run.attrs["bad_files"] == run.attrs["unmatched"] == []
        assert run.attrs["mask_file"] == str(tmp_path / "mask.tif")
        np.testing.assert_array_equal(run.values, frames)  # NaN where they are, nowhere else


# ---------------------------------------------------------------- delay tables

def test_delay_tables_from_lists_dicts_and_files(tmp_path):
    assert read_delay_table([-1, 0.5]) == {0.0: -1.0, 1.0: 0.5}
    assert read_delay_table({"100.25": -1.5, 101: 2}) == {100.25: -1.5, 101.0: 2.0}
    path = tmp_path / "stage.csv"
    path.write_text("position, delay\n# a comment\n100.25, -1.5\n\n101\t2  # after\n")
    assert read_delay_table(path) == {100.25: -1.5, 101.0: 2.0}
    path.write_text("-1\n0.5\n")
    assert read_delay_table(str(path)) == {0.0: -1.0, 1.0: 0.5}
    for text, message in (("1, 2\n3\n", r"line 2: expected 2 numbers, got 1"),
                          ("1\nlate\n", r"line 2: 'late' is not numbers"),
                          ("# nothing\n", r"has no rows")):
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
            read_delay_table(path)
    with pytest.raises(FileNotFoundError, match="No such delay table"):
        read_delay_table(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="'x': 1 is not a number"):
        read_delay_table({"x": 1})


def test_positions_map_through_the_table_and_unknown_ones_are_named(lab, tmp_path):
    path, truth = lab
    table = {round(10 + d, 3): d for d in truth["delays"]}  # stage at 10 mm + delay
    run = tmp_path / "pos"
    for old in sorted(path.glob("scan_*/pumpon_*ps.tif")):
        delay = float(old.name[len("pumpon_"):-len("ps.tif")])
        new = run / f"{old.parent.name}_at_{10 + delay:.3f}.tif"
        new.parent.mkdir(exist_ok=True)
        shutil.copy(old, new)
    files = scan_run(run, "scan_{scan}_at_{position}.tif", delays=table)
    assert files.delays == sorted(truth["delays"]) and files.preset is None
    with pytest.raises(ValueError, match=r"at_9\.000\.tif': stage position 9 is not in the "
                                         r"delay table \(1 delay, for 10\)"):
        scan_run(run, "scan_{scan}_at_{position}.tif", delays={10.0: 0.0})
    with pytest.raises(ValueError, match=r"reads stage positions: give the delay table"):
        scan_run(run, "scan_{scan}_at_{position}.tif")
