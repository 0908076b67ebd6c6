"""Scattering vector ``q`` from pixel radii: the electron wavelength, the geometry of the
camera, or known reflections.

Conventions: ``q = 4π sin(θ) / λ = 2π / d`` in 1/Å, with ``2θ`` the scattering angle; a pixel
at radius ``r`` (px) from the pattern centre on a flat detector at camera length ``L`` scatters
at ``tan(2θ) = r p / L`` (``p`` the pixel size).
"""

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import constants

__all__ = ["QCalibration", "electron_wavelength"]


def electron_wavelength(energy):
    """Relativistic de Broglie wavelength of electrons of kinetic ``energy``.

    Parameters
    ----------
    energy : float or array_like
        Kinetic energy, keV (> 0).

    Returns
    -------
    float or ndarray
        Wavelength, Å: ``h / sqrt(2 m E (1 + E / (2 m c²)))``.

    Raises
    ------
    ValueError
        If an energy is not a positive finite number.

    Examples
    --------
    >>> round(float(electron_wavelength(100)), 5)   # 100 keV
    0.03701
    """
    energy = np.asarray(energy, dtype=float)
    if not (np.isfinite(energy).all() and (energy > 0).all()):
        raise ValueError(f"energy must be positive (keV), got {energy!r}")
    joules = energy * 1e3 * constants.e
    rest = constants.m_e * constants.c**2
    momentum = np.sqrt(2 * constants.m_e * joules * (1 + joules / (2 * rest)))
    wavelength = constants.h / momentum * 1e10
    return wavelength if wavelength.ndim else float(wavelength)


def _positive(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _through_origin(x, y, y_error=None):
    """Least-squares slope of ``y = c x`` and its standard error: from ``y_error`` (absolute)
    when given, else from the scatter of the residuals (NaN for a single point)."""
    c = float(x @ y / (x @ x))
    if y_error is not None:
        return c, float(y_error / np.sqrt(x @ x))
    if len(x) < 2:
        return c, math.nan
    scatter = math.sqrt(float(((y - c * x) ** 2).sum()) / (len(x) - 1))
    return c, scatter / math.sqrt(float(x @ x))


@dataclass(frozen=True)
class QCalibration:
    """How a radius in pixels maps to the scattering vector ``q`` (1/Å).

    With a ``wavelength``, the flat-detector geometry:
    ``q(r) = (4π / λ) sin(arctan(r / L) / 2)``, with ``L`` = ``camera_length_px`` (the camera
    length in pixels); without one, the small-angle proportionality ``q(r) = r / L_q`` with
    ``L_q`` = ``camera_length_px`` in px·Å (as found from reflections when the energy is not
    known). Make one with :meth:`from_geometry` or :meth:`from_reflections`.

    Attributes
    ----------
    camera_length_px : float
        ``L`` (px) with a wavelength, ``L_q`` (px·Å) without.
    camera_length_px_error : float
        Its standard error (0 when given, NaN when it cannot be estimated).
    wavelength : float or None
        Electron wavelength, Å.
    method : str
        ``"geometry"`` or ``"reflections"``.
    parameters : dict
        What the calibration was made from (energy, camera length, pixel size, radii, ...).

    Examples
    --------
    >>> cal = QCalibration.from_geometry(energy=100, camera_length=0.5, pixel_size=50e-6)
    >>> round(cal.scale, 6)   # 1/Å per px at small angles
    0.016975
    >>> round(float(cal.q(100)), 4)
    1.6974
    """

    camera_length_px: float
    camera_length_px_error: float = 0.0
    wavelength: float | None = None
    method: str = "geometry"
    parameters: dict = field(default_factory=dict)

    @classmethod
    def from_geometry(cls, energy, camera_length, pixel_size):
        """From the electron energy (keV), the camera length and the pixel size (both in
        metres, or both in any one length unit).

        Raises
        ------
        ValueError
            If a parameter is not a positive number.
        """
        energy = _positive("energy", energy)
        camera_length = _positive("camera_length", camera_length)
        pixel_size = _positive("pixel_size", pixel_size)
        return cls(camera_length / pixel_size, 0.0, electron_wavelength(energy), "geometry",
                   {"energy_kev": energy, "camera_length": camera_length,
                    "pixel_size": pixel_size})

    @classmethod
    def from_reflections(cls, radii, *, d_spacings=None, q=None, energy=None,
                         radius_error=None):
        """From the radii (px) of known reflections: rings, or peaks' distances from the centre.

        Parameters
        ----------
        radii : array_like
            Radius of each reflection, px.
        d_spacings, q : array_like, optional
            The reflections' lattice-plane spacings (Å) or scattering vectors ``2π / d``
            (1/Å); exactly one of them. For Miller indices and lattice constants, ``q`` is
            :meth:`uedflow.analysis.Lattice.q` of the indices.
        energy : float, optional
            Electron energy (keV): the exact flat-detector geometry is fitted (the camera
            length in px); without it, the small-angle proportionality ``q ∝ r``.
        radius_error : float, optional
            Standard error of each radius (px). Default: from the scatter of the radii about
            the fit (needs two reflections or more; NaN for one).

        Returns
        -------
        QCalibration
            The least-squares ``L`` of ``r_i = L t_i`` (``t_i = tan(2θ_i)``, or ``q_i``
            without energy) and its standard error.

        Raises
        ------
        ValueError
            If the arrays are empty, differ in length, or hold non-positive values, or not
            exactly one of ``d_spacings`` and ``q`` is given.

        Examples
        --------
        >>> cal = QCalibration.from_reflections([50.0, 100.0], q=[1.0, 2.0])
        >>> cal.scale, float(cal.q(75.0))
        (0.02, 1.5)
        """
        if (d_spacings is None) == (q is None):
            raise ValueError("from_reflections needs exactly one of d_spacings or q")
        radii = np.atleast_1d(np.asarray(radii, dtype=float))
        given = np.atleast_1d(np.asarray(q if q is not None else d_spacings, dtype=float))
        name = "q" if q is not None else "d_spacings"
        if radii.ndim != 1 or radii.size == 0 or given.shape != radii.shape:
            raise ValueError(f"radii and {name} must be 1D and of one length, got shapes "
                             f"{radii.shape} and {given.shape}")
        for label, values in (("radii", radii), (name, given)):
            if not (np.isfinite(values).all() and (values > 0).all()):
                raise ValueError(f"{label} must be positive numbers, got {values}")
        q_values = given if q is not None else 2 * np.pi / given
        wavelength = None
        if energy is not None:
            wavelength = electron_wavelength(_positive("energy", energy))
            sine = q_values * wavelength / (4 * np.pi)
            if (sine >= 1).any():
                raise ValueError(f"{name}: a reflection beyond the electrons' reach at "
                                 f"{energy} keV")
            x = np.tan(2 * np.arcsin(sine))
        else:
            x = q_values
        if radius_error is not None:
            radius_error = _positive("radius_error", radius_error)
        length, error = _through_origin(x, radii, radius_error)
        parameters = {"radii": radii.tolist(), "q": q_values.tolist()}
        if energy is not None:
            parameters["energy_kev"] = float(energy)
        return cls(length, error, wavelength, "reflections", parameters)

    @property
    def scale(self):
        """1/Å per px at small angles: ``dq/dr`` at ``r = 0``."""
        if self.wavelength is None:
            return 1 / self.camera_length_px
        return 2 * np.pi / (self.wavelength * self.camera_length_px)

    @property
    def scale_error(self):
        """Standard error of :attr:`scale` (relative error that of the camera length)."""
        return self.scale * self.camera_length_px_error / self.camera_length_px

    def q(self, radius):
        """Scattering vector (1/Å) of a radius (px, scalar or array)."""
        radius = np.asarray(radius, dtype=float)
        if self.wavelength is None:
            return radius / self.camera_length_px
        return 4 * np.pi / self.wavelength * np.sin(np.arctan(radius / self.camera_length_px)
                                                    / 2)

    def radius(self, q):
        """Radius (px) of a scattering vector (1/Å): the inverse of :meth:`q`."""
        q = np.asarray(q, dtype=float)
        if self.wavelength is None:
            return q * self.camera_length_px
        return self.camera_length_px * np.tan(2 * np.arcsin(q * self.wavelength / (4 * np.pi)))

    def to_dict(self):
        """A JSON-ready dict (with ``scale`` and ``scale_error``, for the reader)."""
        return {**asdict(self), "scale": self.scale, "scale_error": self.scale_error}

    @classmethod
    def from_dict(cls, data):
        """The calibration of :meth:`to_dict` (a dict, or its JSON text)."""
        if isinstance(data, str):
            data = json.loads(data)
        names = ("camera_length_px", "camera_length_px_error", "wavelength", "method",
                 "parameters")
        return cls(**{name: data[name] for name in names if name in data})
