"""Single-file readers, drop-in replacements for scikit-ued's ``skued.io`` functions.

TIFF is read with tifffile, Gatan DigitalMicrograph (DM3/DM4) and Merlin Image Binary (MIB)
with RosettaSciIO, NumPy ``.npy`` with NumPy, HDF5 and NeXus with h5py
(:mod:`uedflow.io.hdf5`), the formats of installed reader plug-ins with the plug-in
(:mod:`uedflow.io.plugins`) and every other image format with scikit-image.
Return values (shape, dtype, header dictionaries) are those of scikit-ued.
"""

import functools
import os
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
DM_SUFFIXES = frozenset({".dm3", ".dm4"})
MIB_SUFFIXES = frozenset({".mib"})
NPY_SUFFIXES = frozenset({".npy"})
HDF5_SUFFIXES = frozenset({".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".nx5", ".cxi"})
#: Suffixes of uedflow's own readers (plug-ins cannot take them).
OWN_SUFFIXES = TIFF_SUFFIXES | DM_SUFFIXES | MIB_SUFFIXES | NPY_SUFFIXES | HDF5_SUFFIXES


@functools.cache
def _pillow_suffixes():
    from PIL import Image

    return frozenset(Image.registered_extensions())


def supported_formats():
    """Sorted file suffixes that :func:`diffread` can read (those of installed reader
    plug-ins included).

    Examples
    --------
    >>> from uedflow import supported_formats
    >>> [suffix in supported_formats() for suffix in (".tif", ".dm4", ".mib", ".npy")]
    [True, True, True, True]
    """
    from . import plugins

    return tuple(sorted(OWN_SUFFIXES | _pillow_suffixes() | plugins.suffixes()))


def check_file(path):
    """Return ``path`` as a :class:`~pathlib.Path`, or raise if it is not an existing file.

    Raises
    ------
    FileNotFoundError
        Naming the path, if it does not exist.
    IsADirectoryError
        If it is a directory.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: '{path}'")
    if path.is_dir():
        raise IsADirectoryError(f"Expected a file, got a directory: '{path}'")
    return path


def unsupported_format_error(path):
    """The error raised for a file whose format uedflow does not read."""
    return ValueError(
        f"Unsupported image format for '{path}' (suffix '{Path(path).suffix}'). "
        f"Supported suffixes: {', '.join(supported_formats())}."
    )


def diffread(fname, *, dataset=None, frame=0):
    """Load a diffraction image from a file.

    The reader is chosen from the file suffix: TIFF (``.tif``, ``.tiff``) through tifffile,
    Gatan DigitalMicrograph (``.dm3``, ``.dm4``) and Merlin Image Binary (``.mib``) through
    RosettaSciIO, NumPy (``.npy``), HDF5 and NeXus (``.h5``, ``.hdf5``, ``.nxs``, ...) through
    h5py, the suffixes of installed reader plug-ins (:mod:`uedflow.io.plugins`) through their
    plug-in, and every format that scikit-image reads otherwise.

    Parameters
    ----------
    fname : path-like
        Image file name.
    dataset : str, optional
        HDF5 only: the dataset of frames (or group of datasets, as in an EIGER master file)
        to read from. Default: the one :func:`uedflow.open_stack` opens (the NeXus default
        plot, else ``/entry/data/data`` or ``/entry/data``, else the only dataset of 3 or
        more dims).
    frame : int, optional
        HDF5 only: which frame of that stack, counting all its leading dims in C order
        (negative: from the end). Default 0, the first.

    Returns
    -------
    image : ndarray
        The image. Colour images are converted to grayscale (as float), as
        :func:`skimage.io.imread` does with ``as_gray=True``. A multi-image MIB file gives the
        frames stacked along the last axis, as :func:`mibread` does.

    Raises
    ------
    FileNotFoundError
        If ``fname`` does not exist.
    ValueError
        If the format is not supported (the message lists the supported suffixes).
    uedflow.errors.CorruptFileError
        If the file is truncated or cannot be decoded (or a plug-in fails to read it).
    KeyError
        HDF5: if ``dataset`` is not in the file (the message lists the datasets it holds).

    See Also
    --------
    uedflow.open_stack : open many frames lazily as one labelled stack.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import tifffile
    >>> from uedflow import diffread
    >>> frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     tifffile.imwrite(Path(folder) / "frame.tif", frame)
    ...     image = diffread(Path(folder) / "frame.tif")
    >>> image.dtype, bool(np.array_equal(image, frame))
    (dtype('uint16'), True)
    """
    path = check_file(fname)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        from .hdf5 import read_frame

        return read_frame(path, dataset, frame)
    if dataset is not None or frame != 0:
        raise ValueError(f"diffread: dataset= and frame= are for HDF5 files; '{path}' is not "
                         "one (open a multi-frame file with uedflow.open_stack)")
    if suffix in MIB_SUFFIXES:
        return mibread(path)
    if suffix in DM_SUFFIXES:
        return dmread(path)
    if suffix in NPY_SUFFIXES:
        try:
            return np.load(path, fix_imports=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptFileError(path, f"not a readable .npy file ({exc})") from exc
    if suffix in TIFF_SUFFIXES:
        return _as_gray(tiffread(path))
    from . import plugins

    plugin = plugins.reader_for(path)
    if plugin is not None:
        return plugin_read(plugin, path)
    if suffix not in _pillow_suffixes():
        raise unsupported_format_error(path)
    import skimage.io

    try:
        return skimage.io.imread(path, as_gray=True)
    except Exception as exc:  # imageio/pillow raise many unrelated exception types
        raise CorruptFileError(path, f"cannot be decoded as an image ({exc})") from exc


def plugin_read(plugin, path):
    """The image of ``path`` read by a plug-in :class:`~uedflow.io.plugins.Reader`, with
    errors that name the file and the plug-in."""
    try:
        image = np.asarray(plugin.read(path))
    except (FileNotFoundError, CorruptFileError):
        raise
    except Exception as exc:  # a plug-in may raise anything
        raise CorruptFileError(path, f"the reader plug-in '{plugin.name}' cannot read it "
                               f"({exc!r})") from exc
    if image.ndim < 2:
        raise CorruptFileError(path, f"the reader plug-in '{plugin.name}' returned a "
                               f"{image.ndim}-D array, not an image")
    return image


def _as_gray(image):
    """Colour (RGB/RGBA, last axis) to grayscale, as ``skimage.io.imread(as_gray=True)``."""
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        from skimage.color import rgb2gray, rgba2rgb

        return rgb2gray(rgba2rgb(image) if image.shape[-1] == 4 else image)
    return image


def tiffread(path, out=None):
    """Read the first image series of a TIFF file, with errors that name the file.

    Parameters
    ----------
    path : path-like
        TIFF file.
    out : ndarray, optional
        Preallocated output of the right shape and dtype, filled in place.

    Returns
    -------
    image : ndarray

    Raises
    ------
    uedflow.errors.CorruptFileError
        If the file cannot be decoded or holds no image.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            check_tiff(path, tif)
            series = tif.series[0]
            image = series.asarray(out=out)
            if image.shape != series.shape or image.dtype != series.dtype:
                raise CorruptFileError(path, f"its image decodes to shape {image.shape} and "
                                       f"dtype {image.dtype}, its header says {series.shape} "
                                       f"and {series.dtype}")
            return image
    except (FileNotFoundError, CorruptFileError):
        raise
    except Exception as exc:  # tifffile raises ValueError, struct.error, codec errors...
        raise CorruptFileError(path, f"cannot be read as TIFF ({exc})") from exc


def check_tiff(path, tif):
    """Check that the header of the first image of an open TIFF file describes its data.

    A TIFF file has no checksum: a damaged header can make a reader return an empty image,
    another shape or dtype, or pixels read from the wrong place or filled with zeros. This
    catches what a header consistent with its file cannot show: no image, an empty one, data
    segments missing, empty, past the end of the file or overlapping the header itself, and
    uncompressed data whose size does not fit the frame.

    Parameters
    ----------
    path : path-like
        The file, for the message.
    tif : tifffile.TiffFile
        The file, open.

    Raises
    ------
    uedflow.errors.CorruptFileError
        Naming the file and what is inconsistent.
    """
    if not tif.series or len(tif.series[0].shape) < 2 or 0 in tif.series[0].shape:
        raise CorruptFileError(path, "cannot be read as TIFF (it holds no readable image: no "
                               "valid page)")
    page = tif.series[0].keyframe
    if page.dtype is None or page.samplesperpixel < 1:
        raise CorruptFileError(path, f"its header gives no valid pixel type ({page.bitspersample}"
                               f"-bit samples of format {page.sampleformat}, "
                               f"{page.samplesperpixel} per pixel)")
    size = tif.filehandle.size
    segments = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    if len(segments) != int(np.prod(page.chunked)):
        raise CorruptFileError(path, f"its header lists {len(segments)} data segments, its "
                               f"image of shape {page.shape} needs {int(np.prod(page.chunked))}")
    for offset, count in segments:
        if count <= 0:
            raise CorruptFileError(path, f"an image data segment (at byte {offset}) is empty")
        if offset + count > size:
            raise CorruptFileError(path, f"truncated: image data ends at byte {offset + count}, "
                                   f"the file has {size} bytes")
        for start, end in _tiff_structures(tif, page):
            if offset < end and start < offset + count:
                raise CorruptFileError(path, f"its image data (bytes {offset} to "
                                       f"{offset + count}) overlaps its header (bytes {start} to "
                                       f"{end})")
    rows = int(np.prod(page.chunks[:-1])) if len(page.chunks) > 1 else 1
    chunk_bytes = -(-int(np.prod(page.chunks)) * page.bitspersample // 8) + rows  # row padding
    if page.compression == 1:  # uncompressed: the data must fill the frame, with padding
        total = sum(page.databytecounts)
        need = int(np.prod(page.shape)) * page.bitspersample // 8
        if not need <= total <= len(segments) * chunk_bytes:
            raise CorruptFileError(path, f"its image data has {total} bytes, its frame of shape "
                                   f"{page.shape} and {page.bitspersample}-bit samples needs "
                                   f"{need}")
    elif max(page.databytecounts) > 2 * chunk_bytes + 1024:  # codecs expand little, if at all
        raise CorruptFileError(path, f"a compressed data segment has {max(page.databytecounts)} "
                               f"bytes, more than its {chunk_bytes} bytes of pixels could take "
                               f"(shape {page.chunks}, {page.bitspersample}-bit samples)")


def _tiff_structures(tif, page):
    """Byte ranges ``(start, end)`` of a TIFF file's header, of the page's directory and of its
    tag values stored outside the directory."""
    header = 16 if tif.is_bigtiff else 8
    directory = (tif.tiff.tagnosize + len(page.tags) * tif.tiff.tagsize
                 + tif.tiff.offsetsize)
    ranges = [(0, header), (page.offset, page.offset + directory)]
    for tag in page.tags.values():
        nbytes = getattr(tag, "valuebytecount", 0)
        if nbytes > tif.tiff.offsetsize:  # the value is stored outside the directory
            ranges.append((tag.valueoffset, tag.valueoffset + nbytes))
    return ranges


def dmread(filepath):
    """Read the image of a Gatan DigitalMicrograph file (DM3 or DM4).

    Parameters
    ----------
    filepath : path-like
        Path to the DM3/DM4 file.

    Returns
    -------
    image : ndarray
        The image data, in the dtype stored in the file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    uedflow.errors.CorruptFileError
        If the file cannot be parsed or holds no image.
    """
    return np.asarray(_dm_image(filepath, lazy=False)["data"])


def _dm_image(filepath, lazy, chunks="auto"):
    """The first image record of a DM file, as RosettaSciIO returns it."""
    from rsciio.digitalmicrograph import file_reader

    path = check_file(filepath)
    try:
        records = file_reader(str(path), lazy=lazy, chunks=chunks)
    except Exception as exc:  # the DM parser raises many exception types on bad input
        raise CorruptFileError(path, f"cannot be parsed as DigitalMicrograph ({exc})") from exc
    if not records:
        raise CorruptFileError(path, "contains no image")
    record = records[0]
    data = record["data"]
    offset = _dm_data_end(record)
    if offset is not None and offset > os.path.getsize(path):
        raise CorruptFileError(path, "truncated: image data extends past the end of the file")
    if data.ndim < 2:
        raise CorruptFileError(path, f"holds {data.ndim}-dimensional data, not an image")
    return record


def _dm_data_end(record):
    """Byte offset of the end of the image data of a DM record, when RosettaSciIO reports it."""
    try:
        tag = record["original_metadata"]["ImageList"]["TagGroup0"]["ImageData"]["Data"]
        return int(tag["offset"]) + int(tag["size_bytes"])
    except (KeyError, TypeError, ValueError):
        return None


class MIBFile:
    """Layout of a Merlin Image Binary file, parsed with RosettaSciIO.

    A MIB file is a sequence of frames, each an ASCII header followed by the pixel data.

    Parameters
    ----------
    path : path-like
        The MIB file.

    Attributes
    ----------
    path : pathlib.Path
    frame_shape : tuple of int
        ``(rows, columns)`` of one frame.
    dtype : numpy.dtype
        Pixel type as stored (big-endian).
    header_size, frame_size : int
        Bytes of one header and of one header plus its frame.
    nframes : int
    """

    def __init__(self, path):
        from rsciio.quantumdetector._api import MIBProperties

        self.path = check_file(path)
        with open(self.path, "rb") as fh:
            magic = fh.read(3)
        if magic != b"MQ1":
            raise CorruptFileError(self.path, "not a Merlin Image Binary file (no 'MQ1' header)")
        props = MIBProperties()
        try:
            props.parse_file(str(self.path))
        except Exception as exc:
            raise CorruptFileError(self.path, f"unreadable MIB header ({exc})") from exc
        if props.raw:
            raise CorruptFileError(self.path, "raw (R64) MIB data is not supported")
        if props.dtype is None or props.head_size is None:
            raise CorruptFileError(self.path, "MIB header has an unknown pixel type or size")
        self.frame_shape = tuple(int(n) for n in props.merlin_size)
        self.dtype = np.dtype(props.dtype).newbyteorder(">")
        self.header_size = int(props.head_size)
        self.frame_size = self.header_size + self.dtype.itemsize * int(np.prod(self.frame_shape))
        nframes, remainder = divmod(int(props.file_size), self.frame_size)
        if nframes == 0 or remainder:
            raise CorruptFileError(
                self.path,
                f"truncated: {props.file_size} bytes is not a whole number of frames of "
                f"{self.frame_size} bytes (header {self.header_size} + data)",
            )
        self.nframes = nframes
        self._props = props

    def memmap(self):
        """``(data, headers)``: read-only memory maps of all frames and of their headers."""
        from rsciio.quantumdetector import load_mib_data

        return load_mib_data(str(self.path), mmap_mode="r", mib_prop=self._props,
                             return_headers=True)

    def lazy(self, frames_per_chunk):
        """All frames as a dask array in the native byte order, safe for distributed workers."""
        from rsciio.quantumdetector import load_mib_data

        data = load_mib_data(str(self.path), lazy=True, return_mmap=False,
                             chunks=(frames_per_chunk, *self.frame_shape),
                             mib_prop=self._props)
        if data.ndim == 2:
            data = data[None]
        return data.astype(self.dtype.newbyteorder("="))


def mibheader(filepath, hoffset=0):
    """Header of one image of a Merlin Image Binary file.

    Parameters
    ----------
    filepath : path-like
        Path to the MIB file.
    hoffset : int, optional
        Byte offset of the header, for the images after the first of a multi-image file.

    Returns
    -------
    header : dict
        ``'ID'`` (detector identification), ``'seq_num'`` (image sequence number),
        ``'offset'`` (header length in bytes), ``'nchips'`` (number of read-out chips),
        ``'shape'`` (``(width, height)``), ``'dtype'`` (big-endian pixel type) and
        ``'timestamp'`` (POSIX time of the acquisition, from the header's local time).
    """
    mib = MIBFile(filepath)
    index, misaligned = divmod(int(hoffset), mib.frame_size)
    if misaligned or not 0 <= index < mib.nframes:
        raise ValueError(
            f"hoffset={hoffset} is not the start of an image header in '{mib.path}' "
            f"(images start every {mib.frame_size} bytes, {mib.nframes} images)"
        )
    _, headers = mib.memmap()
    fields = bytes(headers[index]).decode("ascii").split(",")
    return {
        "ID": fields[0],
        "seq_num": int(fields[1]),
        "offset": int(fields[2]),
        "nchips": int(fields[3]),
        "shape": (int(fields[4]), int(fields[5])),
        "dtype": mib.dtype,
        "timestamp": datetime.strptime(fields[9], "%Y-%m-%d %H:%M:%S.%f").timestamp(),
    }


def imibread(filepath):
    """Generate the images of a Merlin Image Binary file, one ndarray each.

    Parameters
    ----------
    filepath : path-like
        Path to the MIB file.

    Yields
    ------
    image : ndarray, ndim 2
        One image, in the (big-endian) pixel type of the file.
    """
    data, _ = MIBFile(filepath).memmap()
    for frame in data:
        yield np.array(frame)


def mibread(filepath):
    """Read a Merlin Image Binary file into one array.

    Parameters
    ----------
    filepath : path-like
        Path to the MIB file.

    Returns
    -------
    images : ndarray
        ``(rows, columns)`` for a single-image file; ``(rows, columns, n)`` for ``n`` images,
        stacked along the last axis as scikit-ued does; in the native byte order.
    """
    data, _ = MIBFile(filepath).memmap()
    stacked = np.moveaxis(np.asarray(data), 0, -1)
    return np.squeeze(np.array(stacked, dtype=stacked.dtype.newbyteorder("="), order="C"))
