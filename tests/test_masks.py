"""Beam block and dead pixels from the structure of a mean pattern, against known truth."""

import numpy as np
import pytest

from uedflow import autocenter
from uedflow.datasets import diffraction_pattern
from uedflow.image.masks import find_beam_block, find_dead_pixels

SHAPE = (256, 256)
CENTER = (121.3, 134.8)


def block_shape(kind, center, angle):
    """A beam block: a disk on a stick towards ``angle`` (degrees), a stick alone from the
    centre to the edge, or a rectangle entering from the left edge."""
    yy, xx = np.indices(SHAPE, dtype=float)
    dy, dx = yy - center[0], xx - center[1]
    if kind == "edge":
        return (np.abs(dy - 20) < 12) & (xx < 90)
    ux, uy = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    along = dx * ux + dy * uy
    stick = (np.abs(-dx * uy + dy * ux) < 7) & (along > 0)
    return stick | (np.hypot(dy, dx) < 16) if kind == "disk" else stick


def mean_pattern(kind, block, *, counts, transmission, offset, frames=24, seed=0):
    """Mean of ``frames`` Poisson frames of rings and spots, behind a ``block`` letting
    ``transmission`` through, with a dark ``offset`` and 3 counts of read noise; and the
    pixels of the block that a block can be seen on at all (the pattern there would give
    at least 3 counts a frame: at fewer, blocked and unblocked pixels read alike)."""
    rng = np.random.default_rng(seed)
    lam = diffraction_pattern(SHAPE, CENTER, kind=kind, intensity=counts)
    visible = block & (lam >= 3)
    lam[block] *= transmission
    mean = np.zeros(SHAPE)
    for _ in range(frames):
        mean += rng.poisson(lam) + rng.normal(offset, 3.0, SHAPE)
    return mean / frames, visible


CASES = [("polycrystalline", "disk", 100, 0.0, 0.0, 70),
         ("polycrystalline", "disk", 100, 0.0, 12.0, 200),
         ("mixed", "disk", 300, 0.03, 0.0, 135),
         ("single_crystal", "stick", 300, 0.05, 0.0, 250),
         ("mixed", "edge", 300, 0.0, 12.0, 0),
         ("polycrystalline", "stick", 3000, 0.02, 0.0, 10)]


@pytest.mark.parametrize("kind, shape, counts, transmission, offset, angle", CASES)
def test_finds_blocks_of_any_shape(kind, shape, counts, transmission, offset, angle):
    truth = block_shape(shape, CENTER, angle)
    mean, visible = mean_pattern(kind, truth, counts=counts, transmission=transmission,
                                 offset=offset)
    found = find_beam_block(mean)
    found = find_beam_block(mean, center=autocenter(mean, ~found))
    assert (found & visible).sum() >= 0.98 * visible.sum() > 0.3 * truth.sum()
    assert (found & ~truth).sum() <= 0.25 * truth.sum()  # the penumbra: a pixel or two


@pytest.mark.parametrize("kind, counts", [("polycrystalline", 3), ("mixed", 300),
                                          ("single_crystal", 100)])
def test_no_block_no_mask(kind, counts):
    mean, _ = mean_pattern(kind, np.zeros(SHAPE, bool), counts=counts, transmission=1,
                           offset=12.0)
    assert not find_beam_block(mean).any()
    assert not find_beam_block(mean, center=CENTER).any()


def test_dead_column_and_pixels_but_never_bright_features():
    rng = np.random.default_rng(3)
    lam = diffraction_pattern(SHAPE, (128.0, 128.0), kind="mixed", intensity=30)
    frames = rng.poisson(lam, (32, *SHAPE)).astype(float)
    frames[:, :, 77] = 0
    frames[:, 40, 50] = 0
    mean = frames.mean(axis=0)
    dead = find_dead_pixels(mean, frames.std(axis=0) / np.sqrt(len(frames)))
    truth = np.zeros(SHAPE, bool)
    truth[:, 77] = truth[40, 50] = True
    visible = truth & (lam >= 5)  # 8 sigma: 5 counts a frame over 32 frames
    assert (dead & visible).sum() >= 0.95 * visible.sum() > 0.2 * truth.sum()
    assert not (dead & ~truth).any()
