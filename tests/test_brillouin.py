"""Brillouin zones: uedflow.image.brillouin against scikit-ued, and bad input."""

import contextlib
import io

import matplotlib
import numpy as np
import pytest
import skued

from uedflow.datasets import default_center, make_frame
from uedflow.image.brillouin import brillouin_zones, brilluoin_zones
from uedflow.image.indexing import bragg_peaks_persistence

matplotlib.use("Agg")

SHAPE = (256, 256)
CENTER = np.array(default_center(SHAPE))
# Unique intensities: scikit-ued's peak optimization looks a pixel value up in the whole
# image, which agrees with the local maximum only when values do not repeat.
FRAME = (make_frame(SHAPE, CENTER, kind="single_crystal", hot_pixels=[], seed=0)
         + np.random.default_rng(0).random(SHAPE))
MASK = np.ones(SHAPE, dtype=bool)
PEAKS = bragg_peaks_persistence(FRAME, center=CENTER, prominence=400)[0][:, ::-1]  # (row, col)


def skued_zones(*args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # scikit-ued prints progress
        return skued.brillouin_zones(*args, **kwargs)


def skued_visible(zones, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return zones.getVisibleBZs(**kwargs)


@pytest.mark.parametrize("center, radius", [
    (CENTER, None), (CENTER.astype(int), None), (CENTER, 3), (CENTER, 2.5),
], ids=["float centre", "int centre", "optimized", "optimized, fractional radius"])
@pytest.mark.parametrize("symmetry", [None, 6])
def test_zones_equal_skued(center, radius, symmetry):
    ours = brillouin_zones(FRAME, MASK, PEAKS, center=center, optimization_radius=radius)
    theirs = skued_zones(FRAME, MASK, PEAKS, center=center, optimization_radius=radius)
    np.testing.assert_array_equal(ours.bragg_peaks, theirs.bragg_peaks)
    visible = ours.getVisibleBZs(symmetry=symmetry)
    expected = skued_visible(theirs, symmetry=symmetry)
    assert len(visible) == len(expected) > 10
    for a, b in zip(visible, expected, strict=True):
        np.testing.assert_array_equal(a.visible_vertices, b.visible_vertices)
        np.testing.assert_array_equal(a.center, b.center)
        assert a.id == b.id and a.is_visible and not a.is_inf
    assert ours.determineConsistency() == theirs.determineConsistency()
    for q in ([100.3, 120.7], [30, 200], [200.5, 64.2]):
        for use_visible in (False, True):
            np.testing.assert_array_equal(
                ours.getEquivalentScatteringVectors(np.array(q), use_visible=use_visible),
                theirs.getEquivalentScatteringVectors(np.array(q), use_visible=use_visible))


def test_hexagonal_zones_are_consistent():
    zones = brillouin_zones(FRAME, MASK, PEAKS, center=CENTER)
    visible = zones.getVisibleBZs(symmetry=6)
    assert all(len(zone.visible_vertices) == 6 for zone in visible)
    assert zones.determineConsistency() > 0.9
    # calling again gives the same zones (scikit-ued fails on a second call)
    again = zones.getVisibleBZs(symmetry=6)
    assert [zone.id for zone in again] == [zone.id for zone in visible]
    assert zones.visible_BZs is again


def test_optimization_moves_peaks_to_local_maxima():
    frame = make_frame(SHAPE, CENTER, kind="single_crystal", hot_pixels=[], seed=1)
    zones = brillouin_zones(frame, MASK, PEAKS + 1, center=CENTER, optimization_radius=3)
    for (row, col), (r0, c0) in zip(zones.bragg_peaks[1:].astype(int), PEAKS + 1, strict=True):
        window = frame[max(r0 - 3, 0):r0 + 4, max(c0 - 3, 0):c0 + 4]
        assert frame[row, col] == window.max()
        assert abs(row - r0) <= 3 and abs(col - c0) <= 3


def test_render_draws_every_visible_zone():
    from matplotlib.figure import Figure

    zones = brillouin_zones(FRAME, MASK, PEAKS, center=CENTER)
    visible = zones.getVisibleBZs(symmetry=6)
    axis = Figure().add_subplot()
    zones.renderVisibleBZs(axis, edgecolor="r")
    assert len(axis.patches) == len(visible)
    np.testing.assert_allclose(axis.patches[0].get_xy()[:-1], visible[0].vertices)
    zones.renderVisibleBZs(axis, BZs=visible[:2])
    assert len(axis.patches) == len(visible) + 2


def test_extra_columns_are_dropped_and_alias():
    assert brilluoin_zones is brillouin_zones
    with_extra = np.hstack([PEAKS, np.zeros((len(PEAKS), 1))])
    zones = brillouin_zones(FRAME, MASK, with_extra, center=CENTER)
    np.testing.assert_array_equal(zones.bragg_peaks[1:], PEAKS)


def test_center_none_uses_autocenter():
    from uedflow.image.center import autocenter

    zones = brillouin_zones(FRAME, MASK, PEAKS)
    np.testing.assert_array_equal(zones.center, autocenter(FRAME, MASK))


def test_bad_input():
    with pytest.raises(ValueError, match="image must be a 2D"):
        brillouin_zones(FRAME[None], MASK, PEAKS, center=CENTER)
    with pytest.raises(ValueError, match="mask has shape"):
        brillouin_zones(FRAME, MASK[:10], PEAKS, center=CENTER)
    with pytest.raises(ValueError, match="peaks must be"):
        brillouin_zones(FRAME, MASK, np.arange(5.0), center=CENTER)
    with pytest.raises(ValueError, match="peaks: no Voronoi"):
        brillouin_zones(FRAME, MASK, PEAKS[:1], center=CENTER)
    with pytest.raises(ValueError, match="center must be"):
        brillouin_zones(FRAME, MASK, PEAKS, center=(1, 2, 3))
    with pytest.raises(ValueError, match="optimization_radius"):
        brillouin_zones(FRAME, MASK, PEAKS, center=CENTER, optimization_radius=-1)
    zones = brillouin_zones(FRAME, MASK, PEAKS, center=CENTER)
    with pytest.raises(ValueError, match="use_visible"):
        zones.getEquivalentScatteringVectors(np.array([10, 10]), use_visible=True)
    with pytest.raises(ValueError, match="no Brillouin zone"):
        zones.determineConsistency()
    with pytest.raises(ValueError, match="bbox"):
        zones.getVisibleBZs(bbox="wide")
    with pytest.raises(ValueError, match="Qvector"):
        zones.getEquivalentScatteringVectors(np.array([1, 2, 3]))
    assert zones.getVisibleBZs(bbox=1) == []
    with pytest.raises(ValueError, match="no Brillouin zone"):
        zones.determineConsistency()
