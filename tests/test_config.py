"""ReduceConfig: strict types, TOML ``false`` for optional keys, the new keys, the checks
against the run (``check``), and the TOML file named in every error."""

import json
import re
import tracemalloc
from pathlib import Path

import pytest

from uedflow.pipeline.config import MAX_ITER, MAX_UPSAMPLE, ReduceConfig

SHAPE = (256, 256)
DELAYS = [-1.0, 0.5, 1.0, 2.0]
SCANS = [0, 1, 2]


def from_toml(tmp_path, text):
    path = tmp_path / "reduce.toml"
    path.write_text(text)
    return path, ReduceConfig.from_toml(path)


# ------------------------------------------------------------------ strict types

@pytest.mark.parametrize("text, key, expected", [
    ('[radial]\nenabled = "no"', "[radial] enabled", "true or false"),
    ("[radial]\nenabled = 1", "[radial] enabled", "true or false"),
    ('[mask]\nbeam_block = "yes"', "[mask] beam_block", "true or false"),
    ("[reject]\nenabled = 0", "[reject] enabled", "true or false"),
    ("[align]\nearly_delays = 1.5", "[align] early_delays", "an integer"),
    ("[align]\nupsample_factor = 2.0", "[align] upsample_factor", "an integer"),
    ("[baseline]\nlevel = 2.5", "[baseline] level", "an integer"),
    ("[symmetrize]\nmod = 6.0", "[symmetrize] mod", "an integer"),
    ("[align]\nmax_shift = inf", "[align] max_shift", "a number > 0"),
    ("[align]\nmax_shift = nan", "[align] max_shift", "a number > 0"),
    ("[dynamics]\nt0 = -inf", "[dynamics] t0", "a finite number"),
    ("[reject]\npixel_z = nan", "[reject] pixel_z", "a number > 0, or false"),
    ("[mask]\npx_thresh = [0, inf]", "[mask] px_thresh", "2 finite numbers"),
    ("[mask]\nfrom_collection = 1", "[mask] from_collection", "one of 'auto'"),
    ("[mask]\nfile = 3", "[mask] file", "a non-empty string, or false"),
    ("[mask]\nfile = true", "[mask] file", "a non-empty string, or false"),
    ("[baseline]\nmethod = true", "[baseline] method", "one of 'dwt', 'dt', or false"),
    ("[reject]\nexclude_scans = [1.0]", "[reject] exclude_scans", "a list of scan numbers"),
    ("[normalize]\nrect = [0.5, 10, 0, 10]", "[normalize] rect", "4 integers"),
    ("[normalize]\nring = [60, 20]", "[normalize] ring", "radii [r1, r2] with 0 <= r1 < r2"),
    ('[normalize]\nmode = "frame"', "[normalize] mode", "one of 'delay', 'run', 'none'"),
    ('[dynamics]\nreference = "after"', "[dynamics] reference", "one of 'before_t0'"),
    ("[baseline]\nmax_iter = 1e9", "[baseline] max_iter", "an integer"),
    ("[baseline]\nmax_iter = 1000000000", "[baseline] max_iter",
     f"an integer from 1 to {MAX_ITER}"),
    (f"[align]\nupsample_factor = {MAX_UPSAMPLE + 1}", "[align] upsample_factor",
     f"an integer from 1 to {MAX_UPSAMPLE}"),
])
def test_wrong_types_and_ranges_are_refused_naming_file_section_and_key(tmp_path, text, key,
                                                                        expected):
    path = tmp_path / "reduce.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError) as info:
        ReduceConfig.from_toml(path)
    assert str(info.value).startswith(f"{path}: {key}: expected {expected}")


@pytest.mark.parametrize("section, key, value", [
    ("align", "upsample_factor", MAX_UPSAMPLE), ("baseline", "max_iter", MAX_ITER),
    ("align", "early_delays", 1), ("dynamics", "t0", -3), ("align", "max_shift", 0.5),
])
def test_values_at_the_limits_are_kept(section, key, value):
    config = ReduceConfig.from_dict({section: {key: value}})
    assert getattr(getattr(config, section), key) == value


def test_numbers_are_floats_and_integers_ints_so_4_and_4_0_are_one_config():
    a = ReduceConfig.from_dict({"align": {"max_shift": 4}, "dynamics": {"t0": 1}})
    b = ReduceConfig.from_dict({"align": {"max_shift": 4.0}, "dynamics": {"t0": 1.0}})
    assert a == b and json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert type(a.align.max_shift) is float and type(a.align.upsample_factor) is int


# ------------------------------------------------------------------ new keys, TOML false

def test_new_keys_and_their_defaults():
    config = ReduceConfig()
    assert config.mask.file == "auto" and config.mask.beam_block is True
    assert config.normalize.mode == "delay" and config.dynamics.reference == "before_t0"
    other = ReduceConfig.from_dict({"mask": {"file": "m.tif", "beam_block": False},
                                    "normalize": {"mode": "run"},
                                    "dynamics": {"reference": "pump_off"}})
    assert (other.mask.file, other.mask.beam_block, other.normalize.mode,
            other.dynamics.reference) == ("m.tif", False, "run", "pump_off")
    assert ReduceConfig.from_dict(json.loads(json.dumps(other.to_dict()))) == other


@pytest.mark.parametrize("section, removed", [("mask", "beam_block_threshold"),
                                              ("normalize", "enabled")])
def test_removed_keys_are_unknown_and_the_valid_ones_listed(section, removed):
    with pytest.raises(ValueError, match=rf"unknown key '{removed}' in section \[{section}\]; "
                                         r"valid keys: .*(beam_block|mode)"):
        ReduceConfig.from_dict({section: {removed: True}})


@pytest.mark.parametrize("section, key", [
    ("mask", "file"), ("mask", "std_thresh"), ("mask", "px_thresh"), ("reject", "pixel_z"),
    ("center", "value"), ("normalize", "ring"), ("normalize", "rect"), ("symmetrize", "mod"),
    ("baseline", "method"), ("baseline", "level"), ("flat", "file"), ("reject", "shift_z"),
    ("reject", "intensity_z"), ("reject", "correlation_z"),
])
def test_toml_false_switches_an_optional_key_off(tmp_path, section, key):
    _, config = from_toml(tmp_path, f"[{section}]\n{key} = false\n")
    assert getattr(getattr(config, section), key) is None
    assert config.to_dict()[section][key] is None
    assert ReduceConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("section, key", [("align", "max_shift"), ("dynamics", "t0"),
                                          ("align", "early_delays"), ("baseline", "max_iter")])
def test_false_is_not_none_for_a_required_key(section, key):
    with pytest.raises(ValueError, match=rf"^\[{section}\] {key}: expected"):
        ReduceConfig.from_dict({section: {key: False}})


# ------------------------------------------------------------------ checks against the run

@pytest.mark.parametrize("config, pump_off, message", [
    ({"align": {"max_shift": 1e12}}, False, r"\[align\] max_shift: 1e\+12 px is not less than "
                                            r"half the smaller side of a 256 x 256 frame"),
    ({"align": {"max_shift": 1000}}, False, r"\[align\] max_shift: 1000 px"),
    ({"align": {"max_shift": 128}}, False, r"\[align\] max_shift: 128 px"),
    ({"normalize": {"rect": [-10, 5000, 0, 10]}}, False, r"\[normalize\] rect: \[-10, 5000"),
    ({"normalize": {"rect": [0, 257, 0, 10]}}, False, r"\[normalize\] rect: .* <= 256"),
    ({"normalize": {"rect": [5, 5, 0, 10]}}, False, r"\[normalize\] rect: .* non-empty"),
    ({"normalize": {"ring": [10, 400]}}, False, r"\[normalize\] ring: radius 400 px is beyond "
                                                r"the diagonal .* \(362.0 px\)"),
    ({"reject": {"exclude_scans": [7]}}, False, r"\[reject\] exclude_scans: scan 7 is not in "
                                                r"the run \(scans: 0, 1, 2\)"),
    ({"align": {"early_delays": 5}}, False, r"\[align\] early_delays: 5, but the run has 4"),
    ({"dynamics": {"t0": -5}}, False, r"\[dynamics\] t0: no delay before time zero"),
    ({"dynamics": {"reference": "pump_off"}}, False, r"\[dynamics\] reference: \"pump_off\", "
                                                     r"but the run has no pump-off frames"),
    ({"center": {"value": [300, 10]}}, False, r"\[center\] value: \[300, 10\] is outside"),
    ({"center": {"value": [10, -0.5]}}, False, r"\[center\] value: \[10, -0.5\] is outside"),
    ({"baseline": {"level": 9}}, False, r"\[baseline\] level: 9 is above log2 .*\(at most 8\)"),
])
def test_check_refuses_what_the_run_cannot_have(config, pump_off, message):
    config = ReduceConfig.from_dict(config)
    with pytest.raises(ValueError, match="^" + message):
        config.check(SHAPE, DELAYS, SCANS, pump_off=pump_off)


@pytest.mark.parametrize("config, pump_off", [
    ({}, False),
    ({"align": {"max_shift": 127.5, "early_delays": 4}}, False),
    ({"normalize": {"rect": [0, 256, 250, 256]}}, False),
    ({"normalize": {"ring": [0, 362]}}, False),
    ({"reject": {"exclude_scans": [0, 2]}}, False),
    ({"dynamics": {"t0": -0.5}}, False),
    ({"dynamics": {"t0": -5, "reference": "pump_off"}}, True),
    ({"center": {"value": [255, 0]}}, False),
    ({"baseline": {"level": 8}}, False),
])
def test_check_accepts_the_edges_of_what_the_run_allows(config, pump_off):
    ReduceConfig.from_dict(config).check(SHAPE, DELAYS, SCANS, pump_off=pump_off)


def test_check_of_an_absurd_max_shift_allocates_nothing():
    config = ReduceConfig.from_dict({"align": {"max_shift": 1e12}})
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"\[align\] max_shift"):
        config.check((4096, 4096), DELAYS, SCANS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000


def test_check_validates_keys_changed_after_the_config_was_built():
    config = ReduceConfig()
    config.align.max_shift = float("inf")
    with pytest.raises(ValueError, match=r"^\[align\] max_shift: expected a number > 0"):
        config.check(SHAPE, DELAYS, SCANS)


# ------------------------------------------------------------------ the TOML file in errors

def test_check_errors_name_the_toml_file_which_is_not_part_of_the_config(tmp_path):
    path, config = from_toml(tmp_path, "[align]\nmax_shift = 1000\n\n[dynamics]\nt0 = 0.25\n")
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: [align] max_shift: 1000 px")):
        config.check(SHAPE, DELAYS, SCANS)
    assert config.source == str(path)
    same = ReduceConfig.from_dict({"align": {"max_shift": 1000}, "dynamics": {"t0": 0.25}})
    assert same == config and same.source is None
    assert "source" not in json.dumps(config.to_dict())
    with pytest.raises(ValueError, match=r"^\[align\] max_shift: 1000 px"):
        same.check(SHAPE, DELAYS, SCANS)


def test_round_trip_of_every_section_set(tmp_path):
    _, config = from_toml(tmp_path, """
[dark]
subtract = false
[flat]
file = "flat.tif"
divide = true
[mask]
file = false
from_collection = "darks"
px_thresh = [10, 5000]
std_thresh = 40.5
beam_block = false
[center]
value = [120, 130.5]
[align]
enabled = true
reference = "early"
early_delays = 2
max_shift = 6
upsample_factor = 50
[normalize]
mode = "none"
rect = [0, 100, 20, 200]
[reject]
enabled = true
intensity_z = 4
shift_z = 6.5
correlation_z = 3
pixel_z = false
exclude_scans = [1]
[average]
align = false
[symmetrize]
mod = 6
[dynamics]
t0 = 0.25
reference = "pump_off"
[radial]
enabled = true
[baseline]
method = "dt"
max_iter = 50
level = 5
""")
    again = ReduceConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.to_dict() == config.to_dict()
    assert config.mask.px_thresh == [10.0, 5000.0] and config.normalize.rect == [0, 100, 20, 200]
    config.check(SHAPE, DELAYS, SCANS, pump_off=True)


# ------------------------------------------------------------------ a TOML that says everything

FULL = """
[run]
pattern = "run{scan}/img_*_{delay:fs}fs.tif"
darks = "darks/*.tif"
pump_off = "off/*.tif"
preset = "lab"
delays = {"100.25" = -1.5, "101" = 2}
missing = "exclude"
skip_bad = true
[mask]
file = "/data/mask.tif"
from_collection = false
px_thresh = false
std_thresh = 40.5
beam_block = false
[normalize]
mode = "run"
ring = [10, 20.5]
[reject]
pixel_z = false
exclude_scans = [1, 3]
[compute]
task_memory = "256 MiB"
"""


@pytest.mark.parametrize("text", ["", FULL])
def test_to_toml_writes_every_key_with_a_comment_and_reads_back_equal(tmp_path, text):
    _, config = from_toml(tmp_path, text)
    written = config.to_toml()
    again = from_toml(tmp_path, written)[1]
    assert again == config and again.to_dict() == config.to_dict()
    lines = written.splitlines()
    keys = [(i, line.split(" = ")[0]) for i, line in enumerate(lines) if " = " in line
            and not line.startswith("#")]
    expected = [key for section in config.to_dict().values() for key in section]
    assert [key for _, key in keys] == expected  # every key, in order
    assert all(lines[i - 1].startswith("# ") for i, _ in keys)  # each under its comment
    bare = config.to_toml(comments=False)
    assert "#" not in bare and from_toml(tmp_path, bare)[1] == config


def test_none_is_written_false_and_false_means_none_for_string_switches(tmp_path):
    _, config = from_toml(tmp_path, FULL)
    assert config.mask.from_collection == "none" and config.mask.px_thresh is None
    assert "px_thresh = false" in config.to_toml() and "pattern = false" in ReduceConfig(
    ).to_toml()
    off = ReduceConfig.from_dict({"normalize": {"mode": False}})
    assert off.normalize.mode == "none"
    assert config.run.delays == {"100.25": -1.5, "101": 2.0}
    assert config.run.open_kwargs() == {
        "pattern": {"frames": "run{scan}/img_*_{delay:fs}fs.tif", "darks": "darks/*.tif",
                    "pump_off": "off/*.tif"},
        "preset": "lab", "delays": {"100.25": -1.5, "101": 2.0}, "missing": "exclude",
        "skip_bad": True}


def test_relative_paths_are_taken_from_the_folder_of_the_toml_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    path = folder / "reduce.toml"
    path.write_text('[mask]\nfile = "mask.tif"\n[flat]\nfile = "../flat/gain.tif"\n'
                    '[run]\ndelays = "stage.csv"\n')
    (folder / "stage.csv").write_text("100.25,-1.5\n")
    config = ReduceConfig.from_toml(Path("configs/reduce.toml"))
    assert config.mask.file == str(folder / "mask.tif")
    assert config.flat.file == str(tmp_path / "flat" / "gain.tif")
    assert config.run.delays == str(folder / "stage.csv")
    # a delay table that is not a file beside the TOML names a dataset in an HDF5 run
    path.write_text('[run]\ndelays = "entry/delays"\n')
    assert ReduceConfig.from_toml(path).run.delays == "entry/delays"
    path.write_text('[mask]\nfile = "auto"\n[run]\ndelays = [-1, 0.5]\n')
    config = ReduceConfig.from_toml(path)
    assert config.mask.file == "auto" and config.run.delays == [-1.0, 0.5]
    assert ReduceConfig.from_dict({"mask": {"file": "m.tif"}}).mask.file == "m.tif"


@pytest.mark.parametrize("run, message", [
    ({"preset": "bogus"}, r"\[run\] preset: expected one of 'auto', 'uedflow', 'lab'"),
    ({"missing": "skip"}, r"\[run\] missing: expected one of 'raise', 'exclude'"),
    ({"skip_bad": "yes"}, r"\[run\] skip_bad: expected true or false"),
    ({"delays": [1, "a"]}, r"\[run\] delays: expected a delay table file"),
    ({"delays": {"x": 1}}, r"\[run\] delays: expected a delay table file"),
    ({"pattern": ""}, r"\[run\] pattern: expected a non-empty string, or false"),
    ({"frames": "x"}, r"unknown key 'frames' in section \[run\]; valid keys: pattern, darks"),
])
def test_run_section_errors_name_the_key(run, message):
    with pytest.raises(ValueError, match=message):
        ReduceConfig.from_dict({"run": run})
