import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile


@pytest.fixture(scope="session")
def skued_data():
    """The sample files that the scikit-ued package ships (a test extra)."""
    spec = importlib.util.find_spec("skued")
    assert spec is not None, "scikit-ued is a test requirement: pip install -e '.[test]'"
    path = Path(spec.submodule_search_locations[0]) / "io" / "tests" / "data"
    assert path.is_dir(), path
    return path


@pytest.fixture
def tiff_dir(tmp_path):
    """A directory of 12 single-frame uint16 TIFF files, and the frames they hold."""
    rng = np.random.default_rng(42)
    frames = rng.poisson(100, size=(12, 48, 64)).astype(np.uint16)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        tifffile.imwrite(folder / f"frame_{i}.tif", frame)
    return folder, frames


@pytest.fixture
def reads(monkeypatch):
    """Record reads of pixel data: ``reads.pixels`` (calls of tifffile's only two ways to pixel
    data) and ``reads.files`` (paths of frames that uedflow's TIFF reader read)."""
    import types

    import uedflow.io.lazy as lazy

    record = types.SimpleNamespace(pixels=[], files=[])
    for method in ("read_array", "read_segments"):
        original = getattr(tifffile.FileHandle, method)
        monkeypatch.setattr(tifffile.FileHandle, method,
                            lambda *a, _f=original, **k: record.pixels.append(1) or _f(*a, **k))
    read_frame = lazy.read_tiff_frame
    monkeypatch.setattr(lazy, "read_tiff_frame",
                        lambda path, *a: record.files.append(path) or read_frame(path, *a))
    return record
