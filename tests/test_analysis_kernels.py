"""The region, peak and Debye–Waller kernels of uedflow.analysis against loops and truths:
region means and errors, peak integration with calibrated errors, refined positions, zones,
equivalent groups, mean-square displacements with calibrated errors."""

import math

import numpy as np
import pytest

from uedflow.analysis import (
    annulus_pixels,
    bragg_regions,
    equivalent_groups,
    integration_weights,
    mean_square_displacement,
    refine_peaks,
    region_means,
    weighted_sums,
    zone_regions,
)


def test_region_means_equal_loops():
    rng = np.random.default_rng(0)
    images = rng.normal(10, 2, (3, 9, 11))
    errors = rng.uniform(0.5, 1.5, (3, 9, 11))
    images[1, 4, 5] = np.nan  # left out of delay 1's mean and error
    errors[2, 0, 0] = np.nan  # the error of a pixel of region 1 in delay 2: its error is NaN
    regions = [annulus_pixels((9, 11), (4.2, 5.1), 0, 2.5), np.array([0, 1, 12])]
    means, errs = region_means(images, errors, regions)
    for d in range(3):
        for k, region in enumerate(regions):
            values = [images[d].flat[i] for i in region if np.isfinite(images[d].flat[i])]
            squares = [errors[d].flat[i] ** 2 for i in region if np.isfinite(images[d].flat[i])]
            assert means[d, k] == pytest.approx(sum(values) / len(values))
            expected = math.sqrt(sum(squares)) / len(values)
            if math.isnan(expected):
                assert math.isnan(errs[d, k])
            else:
                assert errs[d, k] == pytest.approx(expected)
    assert np.isnan(errs[2, 1]) and np.isfinite(errs[2, 0])
    with pytest.raises(ValueError, match=r"regions \[1\] hold no pixel"):
        region_means(images, errors, [regions[0], np.array([], dtype=int)])


def gaussian_spots(shape, peaks, amplitude, sigma, slope=0.0, level=20.0):
    yy, xx = np.indices(shape, dtype=float)
    image = level + slope * (xx - shape[1] / 2)
    for (row, col), a in zip(peaks, amplitude, strict=True):
        image += a * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma**2))
    return image


def test_integrated_intensity_and_calibrated_errors():
    """Spots on a sloping background with Gaussian noise of known per-pixel error, one of
    them with its neighbours near (an annulus cut on one side): the integral less the plane
    under it is the spots' sum over the disk, and its error is the scatter over 400 noise
    draws."""
    shape, sigma = (48, 64), 1.6
    peaks = np.array([[15.3, 18.7], [30.2, 44.1], [24.0, 30.0]])
    amplitude = np.array([400.0, 150.0, 60.0])
    clean = gaussian_spots(shape, peaks, amplitude, sigma, slope=0.8)
    disks, annuli = bragg_regions(shape, peaks, 5.0, (7.0, 10.0))
    regions, weights = integration_weights(shape, disks, annuli)
    noise = 3.0 + 0.05 * clean  # a per-pixel standard error
    rng = np.random.default_rng(1)
    draws = clean + noise * rng.standard_normal((400, *shape))
    intensity, error = weighted_sums(draws, np.broadcast_to(noise, draws.shape), regions,
                                     weights)
    spots = gaussian_spots(shape, peaks, amplitude, sigma, level=0.0).ravel()
    truth = [spots[d].sum() for d in disks]  # the tails of the neighbours are < 1e-3
    np.testing.assert_allclose(intensity.mean(axis=0), truth, rtol=0.01)
    np.testing.assert_allclose(error[0], intensity.std(axis=0), rtol=0.1)
    z = (intensity - truth) / error
    assert np.sqrt(np.mean(z**2)) == pytest.approx(1, abs=0.1)
    # the mean of the cut annulus would be off by the slope: the plane is not
    mean_background = [len(d) * clean.ravel()[a].mean() for d, a in zip(disks, annuli,
                                                                        strict=True)]
    by_mean = [clean.ravel()[d].sum() - b for d, b in zip(disks, mean_background,
                                                          strict=True)]
    assert abs(by_mean[2] / truth[2] - 1) > 0.02
    sums, _ = weighted_sums(clean[None], None, regions, weights)
    np.testing.assert_allclose(sums[0], truth, rtol=2e-3)


def test_annuli_leave_out_the_neighbours():
    shape = (40, 40)
    peaks = np.array([[20.0, 12.0], [20.0, 26.0]])  # 14 px apart: annuli of 10 px overlap
    valid = np.ones(shape, dtype=bool)
    valid[:, 35:] = False
    disks, annuli = bragg_regions(shape, peaks, 4.0, (6.0, 10.0), valid)
    yy, xx = np.divmod(annuli[0], shape[1])
    assert (np.hypot(yy - 20, xx - 26) >= 6).all()  # none within 6 px of the other peak
    yy, xx = np.divmod(annuli[1], shape[1])
    assert (xx < 35).all()
    assert len(disks[0]) == len(disks[1]) == len(annulus_pixels(shape, (20, 12), 0, 4))
    with pytest.raises(ValueError, match="radius <= inner < outer"):
        bragg_regions(shape, peaks, 6.0, (5.0, 10.0))


@pytest.mark.parametrize("slope", [0.0, 3.0])
def test_refined_positions_are_unbiased_on_a_slope(slope):
    shape = (64, 64)
    truth = np.array([[20.37, 31.81], [40.62, 22.15]])
    image = gaussian_spots(shape, truth, [500.0, 300.0], 1.7, slope=slope)
    start = np.round(truth) + np.array([[0.4, -0.5], [-0.6, 0.3]])
    refined = refine_peaks(image, start, 5.0, (7.0, 10.0))
    np.testing.assert_allclose(refined, truth, atol=0.02)
    valid = np.ones(shape, dtype=bool)
    valid[20, 32] = False  # in the first disk: that peak keeps its position
    kept = refine_peaks(image, start, 5.0, (7.0, 10.0), valid)
    np.testing.assert_array_equal(kept[0], start[0])
    np.testing.assert_allclose(kept[1], truth[1], atol=0.02)


def test_zone_regions_are_the_polygon_less_the_disks():
    shape = (30, 30)
    hexagon = [(15 + 8 * math.sin(a), 15 + 8 * math.cos(a))
               for a in np.radians(np.arange(0, 360, 60))]
    valid = np.ones(shape, dtype=bool)
    valid[15, 20] = False
    (region,) = zone_regions(shape, [hexagon], [(15.0, 15.0)], 3.0, valid)
    yy, xx = np.divmod(region, shape[1])
    assert (np.hypot(yy - 15, xx - 15) > 3).all() and 15 * 30 + 20 not in region
    # inside the hexagon: within its circumradius, and farther in than the inradius is all in
    r = np.hypot(yy - 15, xx - 15)
    assert r.max() <= 8
    inner = {i for i in annulus_pixels(shape, (15, 15), 3.01, 8 * math.sqrt(3) / 2 - 0.5)}
    assert inner - {15 * 30 + 20} <= set(region.tolist())


def test_equivalent_groups():
    labels = equivalent_groups(np.log([25.6, 25.5, 44.3, 25.7, 44.4, 51.2]), 0.01)
    assert labels.tolist() == [0, 0, 1, 0, 1, 2]


# ------------------------------------------------------------------ Debye–Waller

Q = np.array([2.95, 5.11, 5.90, 7.80, 8.85, 10.2])


def test_msd_recovers_the_displacement_with_calibrated_errors():
    """Δ⟨u²⟩ from noisy ratios of six peaks, 2000 draws: unbiased, RMS z within 1 ± 0.1, and
    the reduced χ² about 1."""
    rng = np.random.default_rng(2)
    msd = 0.0069
    ratio = np.exp(-Q**2 * msd / 3)
    error = np.array([0.002, 0.003, 0.003, 0.005, 0.006, 0.01])
    draws = ratio + error * rng.standard_normal((2000, Q.size))
    estimate, sigma, chi2 = mean_square_displacement(draws, np.broadcast_to(error, draws.shape),
                                                     Q)
    z = (estimate - msd) / sigma
    assert abs(z.mean()) < 0.1 and np.sqrt(np.mean(z**2)) == pytest.approx(1, abs=0.1)
    assert np.mean(chi2) == pytest.approx(1, abs=0.1)
    # with an intercept: a common factor of 0.97 is separated from the displacement
    estimate, sigma, chi2, a, a_error = mean_square_displacement(
        0.97 * draws, np.broadcast_to(0.97 * error, draws.shape), Q, intercept=True)
    assert np.sqrt(np.mean(((estimate - msd) / sigma) ** 2)) == pytest.approx(1, abs=0.1)
    assert np.sqrt(np.mean(((a - math.log(0.97)) / a_error) ** 2)) == pytest.approx(1, abs=0.1)


def test_msd_leaves_out_bad_peaks():
    ratio = np.exp(-Q**2 * 0.01 / 3)
    error = np.full(Q.size, 1e-3)
    ratio[2], error[4] = np.nan, 0.0
    msd, sigma, chi2 = mean_square_displacement(ratio, error, Q)
    assert msd == pytest.approx(0.01, rel=1e-9) and np.isfinite(sigma) and chi2 < 1e-12
    msd, _, chi2 = mean_square_displacement(ratio[:1], error[:1], Q[:1])
    assert msd == pytest.approx(0.01) and np.isnan(chi2)
