"""Registration of diffraction images onto a reference, and peak tracking.

Two registration criteria, as in scikit-ued:

* without a mask, phase correlation (the whitened cross-power spectrum) [1]_;
* with a mask of valid pixels, the masked normalized cross-correlation [2]_, so that a beam
  block or hot pixels, which do not move with the pattern, do not pin the registration.

Unlike scikit-ued, shifts are found with sub-pixel precision by default: to ``1 /
upsample_factor`` of a pixel, by an upsampled DFT of the cross-power spectrum around the
integer peak [3]_ (phase correlation) or by a Gaussian fit of the three samples about the
integer peak of the masked correlation, along each axis (masked case). ``upsample_factor=1``
gives scikit-ued's integer registration.

:class:`AlignPlan` computes everything that depends on the reference and the mask once
(their spectra and the lag maps of the masked correlation that involve only them), so that a
stream of frames costs two forward and three pruned inverse real FFTs per frame (masked), or
one and one (unmasked).

References
----------
.. [1] C. D. Kuglin and D. C. Hines, "The phase correlation image alignment method",
   Proc. IEEE Int. Conf. on Cybernetics and Society, 163-165 (1975).
.. [2] D. Padfield, "Masked object registration in the Fourier domain", IEEE Trans. Image
   Process. 21(5), 2706-2718 (2012). :DOI:`10.1109/TIP.2011.2181402`
.. [3] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
   registration algorithms", Opt. Lett. 33, 156-158 (2008). :DOI:`10.1364/OL.33.000156`
"""

import itertools
import math

import numpy as np
import scipy.fft as sfft

from ._validate import check_image, check_mask

__all__ = ["AlignPlan", "align", "ialign", "itrack_peak", "translate"]

#: Default sub-pixel precision of the registration: 1/20 px.
DEFAULT_UPSAMPLE_FACTOR = 20
#: Lags where the masks overlap on fewer pixels than this fraction of the full overlap are
#: not considered (scikit-image's default, so that tiny overlaps give no spurious peaks).
OVERLAP_RATIO = 0.3
#: A masked correlation this close to 1 is an exact match at an integer lag; it is kept as is.
EXACT_MATCH = 1e-5
_EPS = float(np.finfo(np.float32).eps)


def _check_image(array, name):
    array = check_image(array, name)
    if min(array.shape) < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got shape {array.shape}")
    return array


def _lags(size, reach):
    """Lags along one axis of a correlation map of ``size``: all, in FFT order (``reach``
    None), or only ``-reach .. reach``."""
    if reach is None:
        lags = np.arange(size)
        return np.where(lags > size // 2, lags - size, lags)
    return np.arange(-reach, reach + 1)


def _lag_maps(spectra, size, reach, workers):
    """Real inverse DFT of half spectra ``(..., P0, P1 // 2 + 1)``, at the lags of ``_lags``.

    With a ``reach``, the inverse along rows is computed only for the rows of the lags kept.
    """
    rows = sfft.ifft(spectra, axis=-2, workers=workers)
    if reach is not None:
        rows = np.concatenate(
            (rows[..., size[0] - reach[0] :, :], rows[..., : reach[0] + 1, :]), axis=-2
        )
    maps = sfft.irfft(rows, n=size[1], axis=-1, overwrite_x=True, workers=workers)
    if reach is not None:
        maps = np.concatenate((maps[..., size[1] - reach[1] :], maps[..., : reach[1] + 1]), -1)
    return maps


def _dft_at(spectrum, size, lags_y, lags_x):
    """Real inverse DFT of a half spectrum ``(P0, P1 // 2 + 1)`` at fractional lags.

    A matrix-multiply DFT on the grid ``lags_y x lags_x`` (Guizar-Sicairos et al.); the
    half spectrum stands for its Hermitian mirror, hence the weight 2 of inner columns.
    """
    fy = sfft.fftfreq(size[0])
    fx = sfft.rfftfreq(size[1])
    weight = np.where((fx == 0) | (fx == 0.5), 1.0, 2.0)
    ky = np.exp(2j * np.pi * np.outer(lags_y, fy)).astype(spectrum.dtype)
    kx = (weight[:, None] * np.exp(2j * np.pi * np.outer(fx, lags_x))).astype(spectrum.dtype)
    return (ky @ spectrum @ kx).real / (size[0] * size[1])


def _vertex(left, centre, right):
    """Offset in (-0.5, 0.5) of the maximum of a Gaussian through samples at -1, 0, 1, and
    the ratio of its maximum to ``centre`` (>= 1).

    Falls back to a parabola where a sample is not positive.
    """
    values = np.array([left, centre, right], dtype=float)
    gaussian = values.min() > 0
    if gaussian:
        values = np.log(values)
    curvature = values[0] - 2 * values[1] + values[2]
    if curvature >= 0:
        return 0.0, 1.0
    offset = float(np.clip(0.5 * (values[0] - values[2]) / curvature, -0.5, 0.5))
    rise = 0.5 * (values[2] - values[0]) * offset + 0.5 * curvature * offset**2
    if gaussian:
        return offset, float(np.exp(rise))
    return offset, float(1 + rise / values[1]) if values[1] > 0 else 1.0


def _fill_value(value, dtype):
    """``value`` in ``dtype``: rounded and clipped for integer types, NaN as 0 (as
    ``scipy.ndimage``)."""
    if dtype.kind == "f":
        return dtype.type(value)
    if math.isnan(value):
        return dtype.type(0)
    info = np.iinfo(dtype)
    return dtype.type(round(min(max(value, info.min), info.max)))


def _axis_span(size, shift):
    """Output range, source offset and interpolation weight of a 1-D shift.

    Output pixel ``i`` takes ``(1 - t) src[i + offset] + t src[i + offset + 1]``; it is valid
    only if that position ``i - shift`` lies in ``[0, size - 1]``.
    """
    offset = math.floor(-shift)
    t = -shift - offset
    start = max(0, -offset)
    stop = min(size, size - offset - (1 if t > 0 else 0))
    return start, max(start, stop), offset, t


def translate(image, shift, fill_value):
    """``image`` moved by ``shift`` (bilinear), ``fill_value`` where it does not reach.

    Same convention as ``scipy.ndimage.shift(image, shift, order=1, mode="constant",
    cval=fill_value)``; the result has the dtype of ``image`` (integers rounded). NaN pixels
    of a float image spread exactly to the output pixels that read them.

    Parameters
    ----------
    image : ndarray, shape (N, M)
        Image.
    shift : tuple of float
        ``(rows, cols)``.
    fill_value : float
        Value of the pixels that no input pixel reaches.

    Returns
    -------
    ndarray
        The moved image, of the dtype of ``image``.
    """
    out = np.full(image.shape, _fill_value(fill_value, image.dtype), dtype=image.dtype)
    (y0, y1, oy, ty), (x0, x1, ox, tx) = map(_axis_span, image.shape, shift)
    if y1 == y0 or x1 == x0:
        return out
    src = image[y0 + oy : y1 + oy + (ty > 0), x0 + ox : x1 + ox + (tx > 0)]
    if ty == 0 and tx == 0:
        out[y0:y1, x0:x1] = src
        return out
    work = np.result_type(image.dtype, np.float32)
    if ty > 0:  # a + t (b - a), along rows then along columns
        lerp = src[1:].astype(work)
        lerp -= src[:-1]
        lerp *= work.type(ty)
        lerp += src[:-1]
        src = lerp
    if tx > 0:
        lerp = np.subtract(src[:, 1:], src[:, :-1], dtype=work)
        lerp *= work.type(tx)
        lerp += src[:, :-1]
        src = lerp
    if image.dtype.kind != "f":  # rounded half away from zero on assignment, as ndimage
        src += np.copysign(work.type(0.5), src)
    out[y0:y1, x0:x1] = src
    return out


class AlignPlan:
    """Registration of images onto one reference, with everything that depends only on the
    reference and the mask computed once.

    Parameters
    ----------
    reference : array-like, shape (M, N)
        Image that others are aligned onto.
    mask : array-like of bool, shape (M, N), optional
        True on valid pixels (of the reference and of every image: a detector mask). With a
        mask, images are registered by their masked normalized cross-correlation (Padfield);
        without, by phase correlation.
    upsample_factor : int, optional
        Shifts are found to within ``1 / upsample_factor`` of a pixel. 1 gives integer
        shifts, as scikit-ued.
    max_shift : float, optional
        Largest shift searched along each axis, in pixels. Default: every shift. With a
        mask, a bound also shrinks the zero-padding of the transforms.
    workers : int, optional
        Threads of each FFT (``scipy.fft``'s ``workers``; -1: all cores). Default 1, as
        frames are usually processed in parallel already.

    Raises
    ------
    ValueError
        If ``reference`` is not a 2-D real array or has NaN/inf (on valid pixels), if
        ``mask`` is not boolean, of another shape or all False, or if ``upsample_factor``
        or ``max_shift`` is not at least 1.

    Notes
    -----
    Shifts follow the convention of ``scipy.ndimage.shift``: the shift returned by
    :meth:`shift` moves ``image`` onto the reference.

    The masked correlation at lag :math:`d` is computed over the pixels :math:`x` where both
    ``mask[x]`` and ``mask[x - d]``; its six cross-correlations (three of which involve only
    the reference and the mask) are products of real FFTs zero-padded to
    ``next_fast_len(M + max_shift)`` (Padfield 2012). Masked images are centred on their
    mean over valid pixels first, which leaves the correlation unchanged and keeps float32
    transforms accurate. The correlation is then fitted about its integer peak by a Gaussian
    along each axis, unless the peak is an exact match (correlation 1, as for images that
    differ by an integer shift) or lies on the edge of the window searched.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow.datasets import make_frame, beam_block_mask
    >>> reference = make_frame((256, 256), (120.0, 135.0), hot_pixels=[], seed=0)
    >>> image = make_frame((256, 256), (121.5, 133.25), block_center=(120.0, 135.0),
    ...                    hot_pixels=[], seed=1)
    >>> plan = AlignPlan(reference, beam_block_mask((256, 256), (120.0, 135.0)), max_shift=8)
    >>> plan.shift(image)
    array([-1.5 ,  1.75])
    """

    def __init__(self, reference, mask=None, *, upsample_factor=DEFAULT_UPSAMPLE_FACTOR,
                 max_shift=None, workers=1):
        reference = _check_image(reference, "reference")
        mask = check_mask(mask, reference.shape)
        if int(upsample_factor) != upsample_factor or upsample_factor < 1:
            raise ValueError(f"upsample_factor must be an integer >= 1, got {upsample_factor}")
        if max_shift is not None and not max_shift >= 1:
            raise ValueError(f"max_shift must be >= 1 pixel or None, got {max_shift}")
        self.shape = reference.shape
        self.mask = mask
        self.upsample_factor = int(upsample_factor)
        self.max_shift = max_shift
        self.workers = workers
        circular = mask is None
        self._reach = None
        if max_shift is not None:
            self._reach = tuple(min(int(max_shift), (n - 1) // 2 if circular else n - 1)
                                for n in self.shape)
        if circular:
            self._size = self.shape
        else:  # zero-padded so that the lags searched do not wrap around
            reach = (n - 1 for n in self.shape) if self._reach is None else self._reach
            self._size = tuple(sfft.next_fast_len(n + r, real=True)
                               for n, r in zip(self.shape, reach, strict=True))
        self._lags = tuple(_lags(n, r) for n, r in zip(self._size, self._reach or (None, None),
                                                       strict=True))
        if circular:
            self._reference = self._spectrum(reference, "reference")
            return

        self._invalid = ~mask
        self._n_valid = int(mask.sum())
        self._image = np.zeros((2, *self.shape), dtype=np.float32)
        self._spectra = np.empty((3, self._size[0], self._size[1] // 2 + 1), np.complex64)

        ref = self._centred(reference, self._image[0], "reference")
        mask_fft = self._fft(mask.astype(np.float32))
        ref_fft = self._fft(ref)
        self._mask_fft = mask_fft
        self._ref_fft = ref_fft
        np.multiply(ref_fft, mask_fft.conj(), out=self._spectra[0])
        np.multiply(self._fft(ref * ref), mask_fft.conj(), out=self._spectra[1])
        np.multiply(mask_fft, mask_fft.conj(), out=self._spectra[2])
        ref_sum, ref_sq_sum, overlap = _lag_maps(self._spectra, self._size, self._reach, workers)
        overlap = np.maximum(np.round(overlap), 1.0)
        # Lag maps of the reference: 1/overlap, mean and variance (times overlap).
        self._inv_overlap = 1.0 / overlap
        self._ref_mean = ref_sum * self._inv_overlap
        self._ref_var = np.maximum(ref_sq_sum - ref_sum * self._ref_mean, 0.0)
        self._excluded = overlap < OVERLAP_RATIO * overlap.max()

    def _fft(self, array):
        """Zero-padded real FFT: rows first, so that the padding rows cost nothing."""
        rows = sfft.rfft(array, n=self._size[1], axis=-1, workers=self.workers)
        return sfft.fft(rows, n=self._size[0], axis=-2, overwrite_x=True, workers=self.workers)

    def _spectrum(self, image, name):
        """Real FFT of ``image`` as float32; its DC term tells whether all pixels are finite."""
        spectrum = sfft.rfft2(image.astype(np.float32), workers=self.workers)
        if not np.isfinite(spectrum[0, 0]):
            raise ValueError(f"{name} has NaN or infinite values")
        return spectrum

    def _centred(self, image, out, name):
        """``image`` minus its mean over valid pixels, 0 on invalid ones, float32, in ``out``.

        The mean is finite only if every valid pixel is: NaN/inf on masked-out pixels are
        ignored, on valid ones they raise ValueError.
        """
        out[...] = image
        np.copyto(out, 0.0, where=self._invalid)
        mean = out.sum(dtype=np.float64) / self._n_valid
        if not np.isfinite(mean):
            raise ValueError(f"{name} has NaN or infinite values on valid (mask=True) pixels")
        np.subtract(out, np.float32(mean), out=out, where=self.mask)
        return out

    def _check(self, image):
        image = _check_image(image, "image")
        if image.shape != self.shape:
            raise ValueError(f"image has shape {image.shape}, the reference {self.shape}")
        return image

    def shift(self, image):
        """Shift ``(row, col)`` that moves ``image`` onto the reference.

        Parameters
        ----------
        image : array-like, shape (M, N)
            Image to register, with the reference's shape.

        Returns
        -------
        numpy.ndarray
            float64 array of 2: apply it with ``scipy.ndimage.shift(image, shift)`` or
            :meth:`align`.

        Raises
        ------
        ValueError
            If ``image`` has another shape than the reference, or NaN/inf (on valid pixels).
        """
        return self.register(image)[0]

    def register(self, image):
        """Shift ``(row, col)`` that moves ``image`` onto the reference (as :meth:`shift`),
        and the correlation there.

        Returns
        -------
        shift : numpy.ndarray
            float64 array of 2.
        correlation : float
            With a mask: the masked normalized cross-correlation of ``image`` and the
            reference at the shift, in [-1, 1] (1: identical up to an affine change of
            intensity), the peak of the fit through the integer lags about it. Without a
            mask: NaN (phase correlation measures no likeness).
        """
        image = self._check(image)
        if self.mask is None:
            return self._phase_shift(image), float("nan")
        return self._masked_shift(image)

    def _phase_shift(self, image):
        spectrum = self._spectrum(image, "image")
        np.conjugate(spectrum, out=spectrum)
        spectrum *= self._reference
        spectrum /= np.maximum(np.abs(spectrum), np.finfo(np.float32).tiny)
        corr = np.abs(_lag_maps(spectrum, self._size, self._reach, self.workers))
        peak = np.unravel_index(np.argmax(corr), corr.shape)
        shift = np.array([lags[k] for lags, k in zip(self._lags, peak, strict=True)], dtype=float)
        u = self.upsample_factor
        if u == 1:
            return shift
        # Guizar-Sicairos: the correlation on a 1/u grid of +-0.75 px about the integer peak.
        region = math.ceil(1.5 * u)
        offsets = (np.arange(region) - region // 2) / u
        fine = np.abs(_dft_at(spectrum, self._size, shift[0] + offsets, shift[1] + offsets))
        fy, fx = np.unravel_index(np.argmax(fine), fine.shape)
        return shift + offsets[[fy, fx]]

    def _masked_shift(self, image):
        img = self._centred(image, self._image[0], "image")
        np.square(img, out=self._image[1])
        spectra = self._fft(self._image)
        np.conjugate(spectra, out=spectra)
        np.multiply(self._mask_fft, spectra[0], out=self._spectra[0])
        np.multiply(self._mask_fft, spectra[1], out=self._spectra[1])
        np.multiply(self._ref_fft, spectra[0], out=self._spectra[2])
        img_sum, img_sq_sum, cross = _lag_maps(self._spectra, self._size, self._reach, self.workers)

        # Normalized correlation: covariance / sqrt(variance product), per lag.
        cross -= self._ref_mean * img_sum
        img_sum *= img_sum
        img_sum *= self._inv_overlap
        img_sq_sum -= img_sum
        np.maximum(img_sq_sum, 0.0, out=img_sq_sum)
        img_sq_sum *= self._ref_var
        denom = np.sqrt(img_sq_sum, out=img_sq_sum)
        small = denom <= 1e3 * _EPS * denom.max()
        denom[small] = 1.0
        cross /= denom
        cross[small] = 0.0
        ncc = np.clip(cross, -1.0, 1.0, out=cross)
        ncc[self._excluded] = -1.0

        best = float(ncc.max())
        peaks = np.argwhere(ncc == best)
        if len(peaks) > 1:  # a flat maximum: its mean position, as scikit-image
            return np.array([np.mean(lags[k]) for lags, k in zip(self._lags, peaks.T,
                                                                  strict=True)]), best
        y, x = peaks[0]
        shift = np.array([self._lags[0][y], self._lags[1][x]], dtype=float)
        u = self.upsample_factor
        if u == 1 or best >= 1 - EXACT_MATCH:
            return shift, best
        peak = best
        for axis, (k, n) in enumerate(zip((y, x), ncc.shape, strict=True)):
            if self._reach is None or 0 < k < n - 1:  # a full map is periodic
                around = [(k - 1) % n, k, (k + 1) % n]
                offset, rise = _vertex(*(ncc[around, x] if axis == 0 else ncc[y, around]))
                shift[axis] += offset
                peak *= rise
        return np.round(shift * u) / u, min(peak, 1.0)

    def align(self, image, fill_value=0.0):
        """``image`` moved onto the reference.

        Parameters
        ----------
        image : array-like, shape (M, N)
            Image to align.
        fill_value : float, optional
            Value of the pixels that the shifted image does not cover.

        Returns
        -------
        numpy.ndarray
            Aligned image, of the dtype of ``image`` (integer types rounded and clipped),
            bilinear where the shift is fractional, an exact copy where it is an integer.

        Raises
        ------
        ValueError
            If ``image`` has another shape than the reference, or NaN/inf (on valid pixels).
        """
        image = np.asarray(image)
        return translate(image, self.shift(image), fill_value)


def align(image, reference, mask=None, fill_value=0.0, *,
          upsample_factor=DEFAULT_UPSAMPLE_FACTOR, max_shift=None):
    """Align a diffraction image onto a reference, with sub-pixel precision.

    Parameters
    ----------
    image : array-like, shape (M, N)
        Image to align.
    reference : array-like, shape (M, N)
        Image that ``image`` is aligned onto.
    mask : array-like of bool, shape (M, N), optional
        True on valid pixels. With a mask, registration uses the masked normalized
        cross-correlation; without, phase correlation.
    fill_value : float, optional
        Value of the edge pixels that the shifted image does not cover.
    upsample_factor : int, optional
        Shifts are found to within ``1 / upsample_factor`` px (default 1/20).
        ``upsample_factor=1`` gives scikit-ued's integer registration.
    max_shift : float, optional
        Largest shift searched along each axis, in pixels (faster). Default: every shift.

    Returns
    -------
    aligned : numpy.ndarray, shape (M, N)
        Aligned image, of the dtype of ``image``.

    Raises
    ------
    ValueError
        If the shapes of ``image``, ``reference`` and ``mask`` differ, if ``mask`` is not
        boolean or all False, or if an image has NaN/inf on valid pixels.

    See Also
    --------
    AlignPlan : the registration, prepared once for many images.
    ialign : align a stream of images.

    Notes
    -----
    The one intended difference from scikit-ued: shifts are sub-pixel by default, and
    fractional shifts are applied by bilinear interpolation (scikit-ued: integer shifts,
    applied by a quadratic spline). Integer shifts give the same, exactly shifted, image.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import align
    >>> from uedflow.datasets import beam_block_mask, make_frame
    >>> mask = beam_block_mask((128, 128), (60.0, 66.0))
    >>> reference = make_frame((128, 128), (60.0, 66.0), hot_pixels=[], seed=0)
    >>> image = make_frame((128, 128), (62.0, 65.0), block_center=(60.0, 66.0),
    ...                    hot_pixels=[], seed=1)
    >>> aligned = align(image, reference, mask=mask)
    >>> def difference(a):
    ...     return np.abs(a[8:-8, 8:-8] - reference[8:-8, 8:-8].astype(float)).mean()
    >>> bool(difference(aligned) < difference(image) / 3)
    True
    """
    plan = AlignPlan(reference, mask, upsample_factor=upsample_factor, max_shift=max_shift)
    return plan.align(image, fill_value)


def _frames(images):
    """Iterator over the frames of ``images``: a 2-D array is one frame, a 3-D array a stack."""
    if isinstance(images, np.ndarray) and images.ndim != 3:
        images = (images,)
    return iter(images)


def ialign(images, reference=None, mask=None, fill_value=0.0, *,
           upsample_factor=DEFAULT_UPSAMPLE_FACTOR, max_shift=None):
    """Generator of diffraction images aligned onto one reference.

    Parameters
    ----------
    images : iterable of array-like, shape (M, N)
        Images to align; an array ``(n, M, N)`` is a stack of ``n`` images.
    reference : array-like, shape (M, N), optional
        Image that all are aligned onto. Default: the first image, which is yielded as is.
    mask : array-like of bool, shape (M, N), optional
        True on valid pixels, see :func:`align`.
    fill_value : float, optional
        Value of the edge pixels that a shifted image does not cover.
    upsample_factor : int, optional
        Shifts are found to within ``1 / upsample_factor`` px; 1 gives scikit-ued's integer
        registration.
    max_shift : float, optional
        Largest shift searched along each axis, in pixels. Default: every shift.

    Yields
    ------
    aligned : numpy.ndarray, shape (M, N)
        Aligned images, of the dtype of the first image (as scikit-ued's streams).

    Raises
    ------
    ValueError
        If ``images`` is empty while ``reference`` is None, or for bad images, see
        :func:`align`. Raised when the generator is advanced.

    See Also
    --------
    AlignPlan : the registration that all images share (computed once).

    Examples
    --------
    >>> from uedflow import ialign
    >>> from uedflow.datasets import beam_block_mask, make_frame
    >>> mask = beam_block_mask((128, 128), (60.0, 66.0))
    >>> frames = [make_frame((128, 128), (60.0 + d, 66.0 - d), block_center=(60.0, 66.0),
    ...                      hot_pixels=[], seed=d) for d in range(4)]
    >>> aligned = list(ialign(frames, mask=mask, max_shift=8))   # onto the first frame
    >>> len(aligned), aligned[3].shape
    (4, (128, 128))
    """
    images = _frames(images)
    first = next(images, None)
    if first is None:
        if reference is None:
            raise ValueError("images is empty: there is no reference to align onto")
        return
    first = np.asarray(first)
    if reference is None:
        reference = first
        yield first
    else:
        images = itertools.chain([first], images)
    plan = AlignPlan(reference, mask, upsample_factor=upsample_factor, max_shift=max_shift)
    for image in images:
        yield plan.align(np.asarray(image, dtype=first.dtype), fill_value)


def itrack_peak(images, row_slice=None, col_slice=None, precision=1 / 10):
    """Generator of the shifts of a diffraction peak through a stream of images.

    Parameters
    ----------
    images : iterable of array-like
        Images (an array ``(n, M, N)`` is a stack of ``n`` images).
    row_slice, col_slice : slice, optional
        Rows and columns of the region around the peak. Default: all.
    precision : float, optional
        Precision of the tracking in pixels (default 1/10).

    Yields
    ------
    shift : numpy.ndarray, shape (2,)
        ``(row, col)`` shift of the region with respect to the first image, by phase
        correlation upsampled to ``precision``: ``(0, 0)`` for the first image.

    Raises
    ------
    ValueError
        If ``images`` is empty or ``precision`` is not in (0, 1] (when the generator is
        first advanced).
    """
    upsample = int(1 / precision) if precision > 0 else 0
    if upsample < 1:
        raise ValueError(f"precision must be in (0, 1] pixel, got {precision}")
    region = (np.s_[:] if row_slice is None else row_slice,
              np.s_[:] if col_slice is None else col_slice)
    images = _frames(images)
    first = next(images, None)
    if first is None:
        raise ValueError("images is empty")
    first = np.asarray(first)
    yield np.zeros(2)
    plan = AlignPlan(first[region], upsample_factor=upsample)
    for image in images:
        yield plan.shift(np.asarray(image)[region].astype(first.dtype, copy=False))
