"""Input checks shared by the frame kernels: one wording of every error, in one place."""

import numpy as np


def check_image(image, name="im", *, finite=False):
    """``image`` as a real 2D numeric array, or ValueError naming ``name``.

    With ``finite``, floating-point images with NaN or infinite values are refused too.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{name} must be a 2D array, got shape {image.shape}")
    if image.dtype == bool or image.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {image.dtype}")
    if finite and image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return image


def check_mask(mask, shape, name="mask", *, require_valid=True):
    """A boolean valid-pixel mask of ``shape`` (True on valid pixels), None for None.

    Boolean masks, and numeric masks holding only 0 and 1 (as read from image files), are
    accepted. With ``require_valid``, a mask without any valid pixel is refused.
    """
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape}, but the image has shape {tuple(shape)}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"{name} must be boolean (True on valid pixels) or hold only 0 "
                             f"and 1, got dtype {mask.dtype}")
        mask = mask != 0
    if require_valid and not mask.any():
        raise ValueError(f"{name} has no valid (True) pixel")
    return mask
