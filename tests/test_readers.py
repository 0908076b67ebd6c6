"""Frame readers against scikit-ued on its own sample files, and on files written here."""

import numpy as np
import pytest
import skued
import tifffile

import uedflow
from uedflow import CorruptFileError, diffread, dmread, imibread, mibheader, mibread


@pytest.mark.parametrize("name", ["bismuth.dm3", "bismuth.dm4", "test.mib", "test_multi.mib",
                                  "png_test.png"])
def test_diffread_matches_skued(skued_data, name):
    ours, theirs = diffread(skued_data / name), skued.diffread(skued_data / name)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["bismuth.dm3", "bismuth.dm4"])
def test_dmread_matches_skued(skued_data, name):
    ours = dmread(skued_data / name)
    assert ours.shape == (256, 256) and ours.dtype == np.int8
    np.testing.assert_array_equal(ours, skued.dmread(skued_data / name))


def test_dm3_and_dm4_agree(skued_data):
    np.testing.assert_array_equal(dmread(skued_data / "bismuth.dm3"),
                                  dmread(skued_data / "bismuth.dm4"))


@pytest.mark.parametrize("name, shape, dtype", [("test.mib", (256, 256), "=u2"),
                                                ("test_multi.mib", (256, 256, 9), ">u1")])
def test_mibread_matches_skued(skued_data, name, shape, dtype):
    ours = mibread(skued_data / name)
    assert ours.shape == shape and ours.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(ours, skued.mibread(skued_data / name))


@pytest.mark.parametrize("name", ["test.mib", "test_multi.mib"])
def test_imibread_matches_skued(skued_data, name):
    ours, theirs = list(imibread(skued_data / name)), list(skued.imibread(skued_data / name))
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_mibheader_matches_skued_on_every_frame(skued_data):
    path = skued_data / "test_multi.mib"
    header = mibheader(path)
    frame_size = header["offset"] + np.prod(header["shape"]) * header["dtype"].itemsize
    for index in range(9):
        hoffset = int(index * frame_size)
        assert mibheader(path, hoffset) == skued.mibheader(path, hoffset)
    assert mibheader(skued_data / "test.mib") == skued.mibheader(skued_data / "test.mib")


def test_mibheader_rejects_misaligned_offset(skued_data):
    with pytest.raises(ValueError, match="hoffset=17"):
        mibheader(skued_data / "test_multi.mib", hoffset=17)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_diffread_tiff_matches_skued(tmp_path, dtype):
    image = (np.random.default_rng(0).random((40, 50)) * 1000).astype(dtype)
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, image)
    ours = diffread(path)
    np.testing.assert_array_equal(ours, image)
    np.testing.assert_array_equal(ours, skued.diffread(path))
    assert ours.dtype == skued.diffread(path).dtype


def test_diffread_rgb_tiff_is_gray_like_skued(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    ours = diffread(path)
    assert ours.shape == (20, 30)
    np.testing.assert_allclose(ours, skued.diffread(path))


def test_diffread_npy(tmp_path):
    array = np.random.default_rng(2).random((16, 16))
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(diffread(tmp_path / "a.npy"), array)


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        diffread(missing)


def test_unsupported_format_names_file_and_lists_formats(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="data.xyz") as info:
        diffread(path)
    assert ".tif" in str(info.value) and ".mib" in str(info.value) and ".dm4" in str(info.value)
    assert set(uedflow.supported_formats()) >= {".tif", ".tiff", ".dm3", ".dm4", ".mib", ".npy",
                                                 ".png"}


def _truncate(source, dest, fraction):
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def test_truncated_tiff_raises_naming_file(tmp_path):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.ones((64, 64), np.uint16))
    cut = _truncate(full, tmp_path / "cut.tif", 0.5)
    with pytest.raises(CorruptFileError, match="cut.tif"):
        diffread(cut)


@pytest.mark.parametrize("name", ["test.mib", "test_multi.mib"])
def test_truncated_mib_raises_naming_file(skued_data, tmp_path, name):
    cut = _truncate(skued_data / name, tmp_path / "cut.mib", 0.9)
    with pytest.raises(CorruptFileError, match=r"cut\.mib.*truncated"):
        mibread(cut)
    with pytest.raises(CorruptFileError, match="cut.mib"):
        mibheader(cut)


def test_not_a_mib_file(tmp_path):
    path = tmp_path / "fake.mib"
    path.write_bytes(b"hello, world" * 100)
    with pytest.raises(CorruptFileError, match="fake.mib"):
        diffread(path)


@pytest.mark.parametrize("name", ["bismuth.dm3", "bismuth.dm4"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncated_dm_raises_naming_file(skued_data, tmp_path, name, fraction):
    cut = _truncate(skued_data / name, tmp_path / f"cut{name[-4:]}", fraction)
    with pytest.raises(CorruptFileError, match="cut.dm"):
        dmread(cut)


def test_corrupt_png_and_npy(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(CorruptFileError, match="bad.png"):
        diffread(tmp_path / "bad.png")
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    with pytest.raises(CorruptFileError, match="bad.npy"):
        diffread(tmp_path / "bad.npy")


@pytest.mark.parametrize("tail", [b"\xff\xff\xff\x7f" + b"junk" * 10, b"junkjunk" * 10])
def test_tiff_whose_first_page_is_past_its_end_raises_naming_it(tmp_path, tail):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + tail)  # a TIFF header whose first-page offset is wrong
    with pytest.raises(CorruptFileError, match=r"junk\.tif.*no readable image"):
        diffread(path)
    with pytest.raises(CorruptFileError, match=r"junk\.tif"):
        uedflow.open_stack(path)
