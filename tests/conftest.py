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
