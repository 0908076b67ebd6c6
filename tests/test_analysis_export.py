"""Export of reduced Datasets and traces: CSV tables and HDF5/NeXus files, read back and
compared value by value; files never half-written nor silently replaced."""

import json

import dask.array as da
import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import uedflow.pipeline.export
from uedflow.pipeline.export import export, open_hdf5, to_csv, to_hdf5


def reduced_like(rng, lazy=True):
    """A small Dataset with the kinds of variables of a reduced store: float32 images (lazy),
    float64 profiles, bools, ints, a string coordinate, units and provenance."""
    wrap = (lambda a: da.from_array(a, chunks=(1, *a.shape[1:]))) if lazy else np.asarray
    ds = xr.Dataset(
        {"diffraction": (("delay", "y", "x"), wrap(rng.random((4, 6, 5), dtype=np.float32)),
                         {"units": "counts", "long_name": "diffracted intensity"}),
         "diffraction_error": (("delay", "y", "x"),
                               wrap(rng.random((4, 6, 5), dtype=np.float32))),
         "radial": (("delay", "radius"), rng.random((4, 3)), {"units": "counts"}),
         "radial_error": (("delay", "radius"), rng.random((4, 3))),
         "radial_change": (("delay", "radius"), rng.normal(0, 0.1, (4, 3)), {"units": "1"}),
         "radial_change_error": (("delay", "radius"), rng.random((4, 3)) / 10),
         "mask": (("y", "x"), rng.random((6, 5)) > 0.3),
         "rejected": (("delay", "scan"), np.array([[True, False]] * 4)),
         "rejected_pixels": (("delay", "scan"), rng.integers(0, 9, (4, 2))),
         "center": ("coord", [2.5, 2.25])},
        coords={"delay": ("delay", [-1.0, 0.1, 0.7, 3.0], {"units": "ps"}),
                "radius": ("radius", [4, 5, 6], {"units": "px"}), "scan": [1, 2],
                "coord": ["row", "col"]},
        attrs={"uedflow": json.dumps({"source": "/data/run7", "config": {}})})
    return ds.assign_coords(q=("radius", [0.4, 0.5, 0.6], {"units": "1/Å"}))


def test_csv_of_profiles_round_trips(tmp_path):
    ds = reduced_like(np.random.default_rng(0))
    path = export(ds, tmp_path / "profiles.csv")
    table = pd.read_csv(path, comment="#")
    assert list(table.columns[:3]) == ["radius", "q", "radial[-1]"]
    assert "radial_change_error[3]" in table.columns
    np.testing.assert_array_equal(table["radius"], [4, 5, 6])
    for k, delay in enumerate(["-1", "0.1", "0.7", "3"]):
        for name in ("radial", "radial_error", "radial_change", "radial_change_error"):
            np.testing.assert_array_equal(table[f"{name}[{delay}]"], ds[name].values[k])
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert header[0] == "# uedflow 0.1.0.dev0 export of /data/run7"
    assert "# q: (1/Å)" in header and "# radial_change: (1)" in header
    assert any(line.startswith("# delay per delay (ps): -1, 0.1, 0.7, 3") for line in header)


def test_csv_of_traces(tmp_path):
    delay = np.array([-1.0, 0.5, 2.0])
    traces = xr.Dataset(
        {"change": (("peak", "delay"), np.float32([[0.0, -0.01, -0.02], [0.0, -0.05, -0.1]])),
         "change_error": (("peak", "delay"), np.full((2, 3), 0.003)),
         "equilibrium": ("peak", [100.0, 50.0])},
        coords={"delay": delay, "peak": [0, 1], "q": ("peak", [2.95, 5.11], {"units": "1/Å"})})
    path = to_csv(traces, tmp_path / "traces.csv")
    table = pd.read_csv(path, comment="#")
    assert list(table.columns) == ["delay", "change[0]", "change[1]", "change_error[0]",
                                   "change_error[1]"]
    # float32 values written in their own shortest form: read back as the same float32
    np.testing.assert_array_equal(table["change[1]"].astype(np.float32),
                                  traces["change"].values[1])
    text = path.read_text()
    assert "# q per peak (1/Å): 2.95, 5.11" in text
    assert "# not in this table (no delay dim): equilibrium ('peak',)" in text
    # the peak table: rows along the peaks
    table = pd.read_csv(to_csv(traces[["equilibrium"]], tmp_path / "table.csv", rows="peak"),
                        comment="#")
    assert list(table.columns) == ["peak", "q", "equilibrium"]
    # a DataArray
    table = pd.read_csv(to_csv(traces["change"].sel(peak=1), tmp_path / "one.csv"),
                        comment="#")
    assert list(table.columns) == ["delay", "change"]


def test_csv_refuses_images_and_unknown_rows(tmp_path):
    ds = reduced_like(np.random.default_rng(1))
    with pytest.raises(ValueError, match="'diffraction' has dims"):
        to_csv(ds, tmp_path / "x.csv")
    with pytest.raises(ValueError, match="rows: no variable has the dim 'peak'"):
        to_csv(ds[["radial"]], tmp_path / "x.csv", rows="peak")
    assert not list(tmp_path.iterdir())


def test_hdf5_round_trips_every_variable(tmp_path):
    ds = reduced_like(np.random.default_rng(2))
    path = to_hdf5(ds, tmp_path / "run.nxs")
    back = open_hdf5(path)
    assert set(back.data_vars) == set(ds.data_vars)
    assert set(back.coords) == set(ds.coords)
    for name in (*ds.data_vars, *ds.coords):
        assert back[name].dims == ds[name].dims, name
        if ds[name].dtype.kind in "biuf":
            assert back[name].dtype == ds[name].dtype, name
        np.testing.assert_array_equal(back[name].values, ds[name].values)
        assert back[name].attrs == ds[name].attrs, name
    assert back.attrs["uedflow"] == ds.attrs["uedflow"]


def test_hdf5_is_nexus(tmp_path):
    ds = reduced_like(np.random.default_rng(3))
    path = to_hdf5(ds, tmp_path / "run.h5")
    with h5py.File(path, "r") as file:
        assert file.attrs["NX_class"] == "NXroot" and file.attrs["default"] == "entry"
        entry = file["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry["program_name"].asstr()[()] == \
            "uedflow"
        data = entry["data"]
        assert data.attrs["NX_class"] == "NXdata" and data.attrs["signal"] == "diffraction"
        assert list(data.attrs["axes"]) == ["delay", ".", "."]
        assert data.attrs["delay_indices"] == 0
        assert data["diffraction"].attrs["units"] == "counts"
        assert data["diffraction_errors"] == data["diffraction_error"]  # a hard link
        assert data["diffraction"].chunks == (1, 6, 5)
        assert data["diffraction"].compression == "gzip"
        notes = entry["notes"]
        assert notes.attrs["NX_class"] == "NXnote"
        assert json.loads(notes["data"].asstr()[()])["source"] == "/data/run7"


def test_files_are_not_replaced_or_left_half_written(tmp_path, monkeypatch):
    ds = reduced_like(np.random.default_rng(4))
    path = to_hdf5(ds, tmp_path / "run.nxs")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        to_hdf5(ds, path)
    with pytest.raises(FileExistsError, match="overwrite"):
        export(ds, tmp_path / "run.nxs")
    assert path.read_bytes() == before

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(uedflow.pipeline.export, "_commit", broken)
    with pytest.raises(OSError, match="disk full"):
        to_hdf5(ds, path, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        to_csv(ds[["radial"]], tmp_path / "p.csv")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nxs"]  # no partial file
    monkeypatch.undo()
    assert to_hdf5(ds, path, overwrite=True) == path
    with pytest.raises(FileNotFoundError, match="does not exist"):
        to_hdf5(ds, tmp_path / "nowhere" / "run.nxs")


def test_export_chooses_by_suffix(tmp_path):
    ds = reduced_like(np.random.default_rng(5))
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        export(ds, tmp_path / "x.txt")
    with pytest.raises(ValueError, match=r"variables \['nope'\] are not in the Dataset"):
        export(ds, tmp_path / "x.nxs", variables=["nope"])
    with pytest.raises(ValueError, match="name the variables"):
        export(ds[["diffraction"]], tmp_path / "x.csv")
    back = open_hdf5(export(ds, tmp_path / "x.hdf5", variables=["radial", "mask"]))
    assert set(back.data_vars) == {"radial", "mask"}
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as file:
        file["x"] = 1
    with pytest.raises(ValueError, match="plain.h5' has no /entry/data"):
        open_hdf5(plain)
