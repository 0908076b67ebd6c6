"""q calibration (electron wavelength, camera geometry, known reflections), lattices and the
indexing of Bragg peaks, against textbook values and independent constructions."""

import math

import numpy as np
import pytest
import xarray as xr

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.analysis import Lattice, QCalibration, electron_wavelength, index_peaks
from uedflow.analysis.lattice import read_cif_cell


@pytest.mark.parametrize("energy, wavelength", [
    (100, 0.037014), (200, 0.025079), (300, 0.0196875),  # electron-microscopy tables (Å)
    (0.001, 12.2643),                                     # 1 eV: h / sqrt(2 m E), non-relativistic
])
def test_electron_wavelength_is_the_tabulated_one(energy, wavelength):
    assert electron_wavelength(energy) == pytest.approx(wavelength, rel=2e-5)


@pytest.mark.parametrize("bad", [0, -5, math.nan, "x"])
def test_bad_energy_is_refused(bad):
    with pytest.raises(ValueError, match="energy"):
        QCalibration.from_geometry(bad, 0.5, 5e-5)


def bragg_radius(d, energy, camera_length, pixel_size):
    """Radius (px) of the reflection of spacing ``d`` (Å), from Bragg's law λ = 2 d sin θ."""
    theta = math.asin(electron_wavelength(energy) / (2 * d))
    return camera_length * math.tan(2 * theta) / pixel_size


@pytest.mark.parametrize("energy", [30, 100, 3000])
def test_geometry_gives_the_q_of_braggs_law(energy):
    cal = QCalibration.from_geometry(energy, camera_length=0.35, pixel_size=30e-6)
    for d in (0.6, 1.23, 2.13, 5.0):
        r = bragg_radius(d, energy, 0.35, 30e-6)
        assert cal.q(r) == pytest.approx(2 * math.pi / d, rel=1e-12)
        assert cal.radius(2 * math.pi / d) == pytest.approx(r, rel=1e-12)
    # small angles: q ∝ r with the slope scale
    assert cal.q(1e-3) / 1e-3 == pytest.approx(cal.scale, rel=1e-9)


def test_reflections_recover_the_camera_length_with_calibrated_errors():
    """Rings of a known material, their radii measured with noise: the fitted camera length
    within its error, over many draws (RMS z within 1 ± 0.2)."""
    energy, length, pixel = 90.0, 0.42, 55e-6
    d = np.array([2.338, 2.025, 1.432, 1.221, 1.169, 1.013])  # gold, (111) to (400)
    radii = np.array([bragg_radius(x, energy, length, pixel) for x in d])
    rng = np.random.default_rng(4)
    z_given, z_scatter = [], []
    for _ in range(300):
        measured = radii + rng.normal(0, 0.3, radii.size)
        cal = QCalibration.from_reflections(measured, d_spacings=d, energy=energy,
                                            radius_error=0.3)
        z_given.append((cal.camera_length_px - length / pixel) / cal.camera_length_px_error)
        cal = QCalibration.from_reflections(measured, d_spacings=d, energy=energy)
        z_scatter.append((cal.camera_length_px - length / pixel) / cal.camera_length_px_error)
    assert np.sqrt(np.mean(np.square(z_given))) == pytest.approx(1, abs=0.2)
    # from the scatter of 6 radii (5 degrees of freedom): Student's t, RMS sqrt(5/3)
    assert np.sqrt(np.mean(np.square(z_scatter))) == pytest.approx(math.sqrt(5 / 3), abs=0.3)
    assert cal.method == "reflections" and cal.parameters["energy_kev"] == energy


def test_reflections_without_energy_are_proportional():
    radii, q = np.array([50.0, 100.5, 149.5]), np.array([1.0, 2.0, 3.0])
    cal = QCalibration.from_reflections(radii, q=q)
    assert cal.wavelength is None
    length = np.linalg.lstsq(q[:, None], radii, rcond=None)[0][0]  # r = L q, least squares
    assert cal.scale == pytest.approx(1 / length, rel=1e-12)
    assert cal.q(100.0) == pytest.approx(100 * cal.scale)
    assert cal.camera_length_px_error > 0
    single = QCalibration.from_reflections([50.0], q=[1.0])
    assert math.isnan(single.camera_length_px_error)


@pytest.mark.parametrize("kwargs, match", [
    ({"d_spacings": [1.0], "q": [1.0]}, "exactly one"),
    ({}, "exactly one"),
    ({"q": [1.0, 2.0]}, "one length"),
    ({"q": [-1.0]}, "positive"),
    ({"d_spacings": [0.001], "energy": 1.0}, "beyond"),
])
def test_bad_reflections_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QCalibration.from_reflections([50.0], **kwargs)


def test_calibration_round_trips_through_the_provenance():
    ds = xr.Dataset({"radial": (("delay", "radius"), np.ones((2, 4)))},
                    coords={"radius": [5, 6, 7, 8]}, attrs={"uedflow": '{"config": {}}'})
    cal = QCalibration.from_geometry(100, 0.5, 50e-6)
    out = ds.ued.calibrate_q(cal)
    np.testing.assert_allclose(out["q"].values, cal.q(np.array([5, 6, 7, 8])))
    assert out["q"].attrs["units"] == "1/Å" and out["q"].dims == ("radius",)
    assert out.ued.q_calibration == cal
    assert "config" in out.attrs["uedflow"] and ds.ued.q_calibration is None
    with pytest.raises(ValueError, match="QCalibration"):
        ds.ued.calibrate_q({"scale": 1})


# ------------------------------------------------------------------ lattices

def test_d_spacings_of_textbook_lattices():
    cubic = Lattice.cubic(4.078)
    for hkl in [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1)]:
        assert cubic.d(hkl) == pytest.approx(4.078 / math.sqrt(sum(i * i for i in hkl)))
    hexagonal = Lattice.hexagonal(2.464, 6.711)
    for h, k, el in [(1, 0, 0), (1, 1, 0), (0, 0, 2), (1, 0, 1), (2, -1, 3)]:
        inverse = 4 / 3 * (h * h + h * k + k * k) / 2.464**2 + el * el / 6.711**2
        assert hexagonal.d((h, k, el)) == pytest.approx(1 / math.sqrt(inverse))


def test_triclinic_reciprocal_basis():
    lattice = Lattice(5.1, 6.3, 7.7, 81.0, 97.0, 112.0)
    np.testing.assert_allclose(lattice.direct @ lattice.reciprocal.T, 2 * np.pi * np.eye(3),
                               atol=1e-12)
    ca, cb, cg = (math.cos(math.radians(x)) for x in (81.0, 97.0, 112.0))
    volume = 5.1 * 6.3 * 7.7 * math.sqrt(1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg)
    assert lattice.volume == pytest.approx(volume)
    lengths = np.linalg.norm(lattice.direct, axis=1)
    np.testing.assert_allclose(lengths, [5.1, 6.3, 7.7])


def test_zone_basis_is_perpendicular_to_the_axis():
    cubic = Lattice.cubic(3.0)
    basis = cubic.zone_basis((1, 1, 1))
    assert (basis @ [1, 1, 1] == 0).all()
    np.testing.assert_allclose(cubic.q(basis), 2 * np.pi / 3 * math.sqrt(2))
    assert {tuple(np.abs(b)) for b in cubic.zone_basis((0, 0, 1))} == {(1, 0, 0), (0, 1, 0)}
    with pytest.raises(ValueError, match="zone_axis"):
        cubic.zone_basis((0, 0, 0))


@pytest.mark.parametrize("bad", [(0, 1, 1), (1, 1, -2), (1, 1, 1, 90, 90, 200)])
def test_bad_lattice_is_refused(bad):
    with pytest.raises(ValueError, match="lattice|angle"):
        Lattice(*bad)


def test_read_cif_cell(tmp_path):
    cif = tmp_path / "graphite.cif"
    cif.write_text("data_graphite\n_cell_length_a 2.4612(3)\n_cell_length_b   2.4612\n"
                   "_cell_length_c 6.7079(8)\n_cell_angle_alpha 90\n_cell_angle_beta 90.0\n"
                   "_cell_angle_gamma 120.00  # hexagonal\n_symmetry_space_group_name_H-M "
                   "'P 63/m m c'\n")
    assert read_cif_cell(cif) == (2.4612, 2.4612, 6.7079, 90.0, 90.0, 120.0)
    assert Lattice.from_cif(cif) == Lattice.hexagonal(2.4612, 6.7079)
    cif.write_text("data_x\n_cell_length_a 2.4\n")
    with pytest.raises(ValueError, match=r"graphite.cif: no _cell_length_b"):
        read_cif_cell(cif)


def hexagonal_spots(spacing, rotation, center, n=3):
    """Spot positions of a hexagonal zone-axis pattern and their (h, k) on the basis b1, b2
    (60 degrees apart), the spots within ``n`` steps."""
    theta = math.radians(rotation)
    b1 = spacing * np.array([math.sin(theta), math.cos(theta)])
    b2 = spacing * np.array([math.sin(theta + math.pi / 3), math.cos(theta + math.pi / 3)])
    hk = [(h, k) for h in range(-n, n + 1) for k in range(-n, n + 1) if (h, k) != (0, 0)
          and abs(h + k) <= n]
    return np.array([center + h * b1 + k * b2 for h, k in hk]), np.array(hk)


@pytest.mark.parametrize("rotation, mirror", [(0.0, False), (17.0, False), (-41.0, True)])
def test_indexing_names_the_peaks_of_a_zone_axis_pattern(rotation, mirror):
    lattice = Lattice.hexagonal(2.46, 6.7)
    center = np.array([201.3, 187.8])
    peaks, _ = hexagonal_spots(31.7, rotation, center)
    if mirror:
        peaks[:, 1] = 2 * center[1] - peaks[:, 1]
    rng = np.random.default_rng(1)
    noisy = peaks + rng.normal(0, 0.15, peaks.shape)
    spurious = np.vstack([noisy, center + np.array([9.0, 13.0])])  # not on the lattice
    hkl, indexed, basis, hkl_basis = index_peaks(spurious, center, lattice)
    assert indexed[:-1].all() and not indexed[-1]
    assert (hkl[:, 2] == 0).all() and len({tuple(x) for x in hkl[:-1]}) == len(peaks)
    # each peak sits where its indices put it on the fitted basis
    coords = np.linalg.solve(lattice.vector(hkl_basis)[:, :2].T,
                             lattice.vector(hkl[:-1])[:, :2].T).T
    np.testing.assert_allclose(coords @ basis + center, peaks, atol=0.1)
    # q of the indices is proportional to the distance from the centre: one q scale
    scale = lattice.q(hkl[:-1]) / np.hypot(*(peaks - center).T)
    np.testing.assert_allclose(scale, lattice.q((1, 0, 0)) / 31.7, rtol=1e-9)
    # Friedel pairs have opposite indices
    far = np.argmax(np.hypot(*(peaks - center).T))
    opposite = np.argmin(np.hypot(*(peaks - (2 * center - peaks[far])).T))
    assert (hkl[opposite] == -hkl[far]).all()


def test_indexing_refuses_a_lattice_that_does_not_fit():
    peaks, _ = hexagonal_spots(30.0, 0.0, np.array([100.0, 100.0]))
    with pytest.raises(ValueError, match="does not match the zone"):
        index_peaks(peaks, (100, 100), Lattice.cubic(3.0))
    with pytest.raises(ValueError, match="one line"):
        index_peaks([(100, 130), (100, 160), (100, 70)], (100, 100), Lattice.cubic(3.0))
