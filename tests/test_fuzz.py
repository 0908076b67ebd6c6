"""Seeded fuzzing of what uedflow reads: damaged TIFF, MIB and DM files and zarr chunks.

Each case damages a clean file (or one chunk file of an ingested store) by flipping bits,
truncating it or zeroing a run of bytes, half of the cases in its header, and checks that

* nothing hangs (a deadline of a few seconds per read);
* reading it either raises an error that names the file (or the chunk), or returns the clean
  data wherever the damage missed the pixels' bytes: never a silently wrong value;
* ``uedflow info`` and ``uedflow ingest`` end with status 0, or with status 2 and one line
  naming the file; what ``ingest`` wrote holds the clean data wherever the damage missed it,
  and a zarr frame that reads otherwise is flagged as not present.
"""

import contextlib
import io
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile

from uedflow import CorruptFileError, diffread, open_stack, to_zarr
from uedflow.cli import main
from uedflow.io.readers import _dm_image

#: Damaged files per format.
CASES = 20
#: Seconds a read may take before it counts as a hang.
DEADLINE = 10
#: Shape of the frames written here.
SHAPE = (24, 32)


def damage(data, rng, header):
    """A seeded corruption of ``data``: ``(damaged bytes, kind, hit)``, ``hit`` marking the
    bytes of ``data`` that were changed or cut off. Half of the cases hit the first ``header``
    bytes."""
    damaged, hit = bytearray(data), np.zeros(len(data), bool)
    end = header if rng.random() < 0.5 else len(data)
    kind = ("flip", "truncate", "zero")[int(rng.integers(3))]
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(end))
            damaged[i] ^= 1 << int(rng.integers(8))
            hit[i] = True
    elif kind == "zero":
        i, n = int(rng.integers(end)), int(rng.integers(1, 65))
        damaged[i:i + n] = bytes(len(damaged[i:i + n]))
        hit[i:i + n] = True
    else:
        cut = int(rng.integers(1, end))
        damaged, hit[cut:] = damaged[:cut], True
    return bytes(damaged), kind, hit


@contextlib.contextmanager
def deadline(seconds=DEADLINE):
    """Raise TimeoutError in the main thread if the block takes more than ``seconds``."""
    def expire(*_):
        raise TimeoutError(f"no answer after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pixels_hit(hit, offset, shape, itemsize):
    """Which pixels of raw data at ``offset`` (``shape``, ``itemsize`` bytes each, in order)
    have a byte in ``hit``."""
    nbytes = int(np.prod(shape)) * itemsize
    region = np.ones(nbytes, bool)
    part = hit[offset:offset + nbytes]
    region[:part.size] = part
    return region.reshape(-1, itemsize).any(axis=1).reshape(shape)


def assert_clean_where_missed(values, clean, missed_by_damage, what):
    assert values.shape == clean.shape and values.dtype == clean.dtype, (what, values.shape,
                                                                         values.dtype)
    wrong = (values != clean) & missed_by_damage
    assert not wrong.any(), f"{what}: {np.count_nonzero(wrong)} pixels silently wrong"


def run_main(argv):
    """``(status, stderr)`` of ``uedflow argv``, within the deadline."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), deadline():
        status = main([str(a) for a in argv])
    return status, err.getvalue()


def assert_one_line_naming(err, name, what):
    assert err.count("\n") == 1 and "Traceback" not in err, (what, err)
    assert str(name) in err, (what, err)


# ---------------------------------------------------------------- the clean files


def tiff_file(folder, compression):
    """A TIFF frame; the pixels a damage hits (uncompressed: by offset; compressed: all of
    them if it hits the compressed data, whose checksum the reader checks)."""
    frame = np.random.default_rng(0).poisson(100, SHAPE).astype(np.uint16)
    path = folder / f"clean-{compression}.tif"
    tifffile.imwrite(path, frame, compression=compression)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    if compression is None:
        return path, frame, lambda hit: pixels_hit(hit, offset, SHAPE, 2), offset + 16
    return path, frame, lambda hit: np.full(SHAPE, hit[offset:offset + count].any()), 256


def mib_file(skued_data):
    clean = diffread(skued_data / "test.mib")
    header = 384  # one frame: its header, then big-endian 16-bit pixels
    return skued_data / "test.mib", clean, lambda hit: pixels_hit(hit, header, clean.shape, 2), \
        header


def dm_file(skued_data, name):
    record = _dm_image(skued_data / name, lazy=False)
    clean = np.asarray(record["data"])
    offset = int(record["original_metadata"]["ImageList"]["TagGroup0"]["ImageData"]["Data"]
                 ["offset"])
    return skued_data / name, clean, \
        lambda hit: pixels_hit(hit, offset, clean.shape, clean.dtype.itemsize), 4096


@pytest.fixture(scope="module")
def files(tmp_path_factory, skued_data):
    folder = tmp_path_factory.mktemp("clean")
    return {"tiff": tiff_file(folder, None), "tiff-zlib": tiff_file(folder, "zlib"),
            "mib": mib_file(skued_data), "dm3": dm_file(skued_data, "bismuth.dm3"),
            "dm4": dm_file(skued_data, "bismuth.dm4")}


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("fmt", ["tiff", "tiff-zlib", "mib", "dm3", "dm4"])
def test_damaged_files_raise_naming_them_or_read_what_was_not_damaged(files, fmt, tmp_path):
    source, clean, hit_pixels, header = files[fmt]
    data = source.read_bytes()
    rng = np.random.default_rng(list(files).index(fmt))
    outcomes = set()
    for case in range(CASES):
        damaged, kind, hit = damage(data, rng, header)
        path = tmp_path / f"case{case}{source.suffix}"
        path.write_bytes(damaged)
        missed = ~hit_pixels(hit)
        what = f"{fmt} case {case} ({kind})"
        try:
            with deadline():
                values = diffread(path)
        except (CorruptFileError, OSError, ValueError) as exc:
            assert path.name in str(exc), (what, str(exc))
            outcomes.add("raised")
        else:
            assert_clean_where_missed(values, clean, missed, what)
            outcomes.add("read")

        status, err = run_main(["info", path])
        assert status in (0, 2) and (status == 2 or not err), (what, status, err)
        if status == 2:
            assert_one_line_naming(err, path.name, what)
        store = tmp_path / f"case{case}.zarr"
        status, err = run_main(["ingest", path, "-o", store, "-q"])
        if status == 2:
            assert_one_line_naming(err, path.name, what)
        else:
            assert status == 0 and not err, (what, status, err)
            stored = open_stack(store).values.reshape(clean.shape)
            assert_clean_where_missed(stored, clean, missed, what + ", ingested")
        shutil.rmtree(store, ignore_errors=True)
    assert outcomes == {"raised", "read"}  # the cases exercise both


# ---------------------------------------------------------------- zarr chunks


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A store of 2 x 3 frames that ``to_zarr`` wrote, and its frames."""
    folder = tmp_path_factory.mktemp("ingested")
    frames = np.random.default_rng(1).poisson(100, (2, 3, *SHAPE)).astype(np.uint16)
    to_zarr(open_stack(frames), folder / "clean.zarr")
    return folder / "clean.zarr", frames


def test_damaged_zarr_chunks_raise_naming_them_or_are_not_present(ingested, tmp_path):
    source, clean = ingested
    rng = np.random.default_rng(7)
    outcomes = set()
    for case in range(CASES):
        store = tmp_path / f"case{case}.zarr"
        shutil.copytree(source, store)
        index = (int(rng.integers(2)), int(rng.integers(3)))
        chunk = Path(store, "intensity", "c", *map(str, index), "0", "0")
        damaged, kind, _ = damage(chunk.read_bytes(), rng, 32)
        chunk.write_bytes(damaged)
        what = f"zarr case {case} ({kind}, frame {index})"
        missed = np.ones(clean.shape, bool)
        missed[index] = False  # a damaged chunk may change its whole frame, nothing else
        try:
            with deadline():
                stack = open_stack(store)
                values = stack.values
        except (CorruptFileError, OSError, ValueError) as exc:
            assert str(chunk) in str(exc), (what, str(exc))
            outcomes.add("raised")
        else:
            assert_clean_where_missed(values, clean, missed, what)
            if not np.array_equal(values[index], clean[index]):
                assert not stack.present.values[index], what  # flagged, never passed off
                assert stack.attrs["bad_files"][0][0] == str(chunk), what
                outcomes.add("not present")

        status, err = run_main(["info", store])
        if status == 2:
            assert_one_line_naming(err, chunk, what)
        else:
            assert status == 0 and not err, (what, status, err)
        output = tmp_path / f"case{case}-again.zarr"
        status, err = run_main(["ingest", store, "-o", output, "-q"])
        if status == 2:
            assert_one_line_naming(err, chunk, what)
        else:
            assert status == 0 and not err, (what, status, err)
            again = open_stack(output)
            assert_clean_where_missed(again.values, clean, missed, what + ", ingested again")
            if not np.array_equal(again.values[index], clean[index]):
                assert not again.present.values[index], what
        shutil.rmtree(output, ignore_errors=True)
    assert outcomes == {"raised", "not present"}
