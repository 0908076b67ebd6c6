"""Configuration of a run reduction: :class:`ReduceConfig`, one section per step.

Every section and every key is optional; what is not given keeps its default. A
configuration comes from a dict (:meth:`ReduceConfig.from_dict`) or a TOML file
(:meth:`ReduceConfig.from_toml`), and goes back to a JSON-serialisable dict
(:meth:`ReduceConfig.to_dict`) that rebuilds it exactly. The keys are documented in
``docs/pipeline.md``.
"""

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields

__all__ = ["ReduceConfig"]


def _choice(section, key, value, choices):
    if value not in choices:
        raise ValueError(f"[{section}] {key}: expected one of {choices}, got {value!r}")


def _positive(section, key, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"[{section}] {key}: expected a number > 0, got {value!r}")


def _pair(section, key, value, n=2):
    if value is None:
        return None
    if (not isinstance(value, list | tuple) or len(value) != n
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in value)):
        raise ValueError(f"[{section}] {key}: expected {n} finite numbers, got {value!r}")
    return [float(v) for v in value]


@dataclass
class DarkConfig:
    """Dark subtraction: the mean of the run's dark frames (``run.attrs["darks"]``)."""

    subtract: bool = True


@dataclass
class FlatConfig:
    """Flat-field (gain) correction: frames are divided by the normalised flat field."""

    file: str | None = None
    divide: bool = True


@dataclass
class MaskConfig:
    """Pixel mask: a given mask, bad pixels from a collection, and the beam block."""

    file: str | None = None
    from_collection: str = "auto"
    px_thresh: list = field(default_factory=lambda: [0.0, 3e4])
    std_thresh: float | None = None
    beam_block_threshold: float | None = 0.1

    def __post_init__(self):
        _choice("mask", "from_collection", self.from_collection, ("auto", "darks", "run", "none"))
        self.px_thresh = _pair("mask", "px_thresh", self.px_thresh)
        _positive("mask", "std_thresh", self.std_thresh)
        _positive("mask", "beam_block_threshold", self.beam_block_threshold)


@dataclass
class CenterConfig:
    """Pattern centre ``[row, col]``; None: found by ``autocenter`` on the reference."""

    value: list | None = None

    def __post_init__(self):
        self.value = _pair("center", "value", self.value)


@dataclass
class AlignConfig:
    """Sub-pixel masked registration of every frame onto a reference."""

    enabled: bool = True
    reference: str = "first"
    early_delays: int = 1
    max_shift: float = 8.0
    upsample_factor: int = 20

    def __post_init__(self):
        _choice("align", "reference", self.reference, ("first", "early"))
        _positive("align", "early_delays", self.early_delays, allow_none=False)
        _positive("align", "max_shift", self.max_shift, allow_none=False)
        _positive("align", "upsample_factor", self.upsample_factor, allow_none=False)


@dataclass
class NormalizeConfig:
    """Normalisation of every frame to its total intensity in a region."""

    enabled: bool = True
    ring: list | None = None
    rect: list | None = None

    def __post_init__(self):
        self.ring = _pair("normalize", "ring", self.ring)
        self.rect = _pair("normalize", "rect", self.rect, 4)
        if self.ring is not None and self.rect is not None:
            raise ValueError("[normalize] give a ring or a rect, not both")


@dataclass
class RejectConfig:
    """Automatic outlier rejection: whole frames by robust z-scores, pixels by a MAD cut."""

    enabled: bool = True
    intensity_z: float = 5.0
    shift_z: float = 5.0
    correlation_z: float = 5.0
    pixel_z: float | None = 5.0
    exclude_scans: list = field(default_factory=list)

    def __post_init__(self):
        for key in ("intensity_z", "shift_z", "correlation_z"):
            _positive("reject", key, getattr(self, key), allow_none=False)
        _positive("reject", "pixel_z", self.pixel_z)
        if not isinstance(self.exclude_scans, list | tuple) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in self.exclude_scans):
            raise ValueError(f"[reject] exclude_scans: expected a list of scan numbers, got "
                             f"{self.exclude_scans!r}")
        self.exclude_scans = list(self.exclude_scans)


@dataclass
class AverageConfig:
    """Average over scans, then (``align``) registration of the averages onto the reference."""

    align: bool = True


@dataclass
class SymmetrizeConfig:
    """Optional n-fold rotational symmetrisation of the averages (``mod``, e.g. 6)."""

    mod: int | None = None

    def __post_init__(self):
        if self.mod is not None and (isinstance(self.mod, bool) or not isinstance(self.mod, int)
                                     or self.mod < 1 or 360 % self.mod):
            raise ValueError(f"[symmetrize] mod: expected a divisor of 360, got {self.mod!r}")


@dataclass
class DynamicsConfig:
    """Time zero (ps): the equilibrium pattern is the mean of the delays before it."""

    t0: float = 0.0

    def __post_init__(self):
        if isinstance(self.t0, bool) or not isinstance(self.t0, int | float):
            raise ValueError(f"[dynamics] t0: expected a delay in ps, got {self.t0!r}")


@dataclass
class RadialConfig:
    """Azimuthal averages ``(delay, radius)`` of the averages, about the centre."""

    enabled: bool = True


@dataclass
class BaselineConfig:
    """Optional baseline of the radial profiles: ``method`` "dwt" or "dt" (None: none)."""

    method: str | None = None
    max_iter: int = 100
    level: int | None = None

    def __post_init__(self):
        _choice("baseline", "method", self.method, (None, "dwt", "dt"))
        _positive("baseline", "max_iter", self.max_iter, allow_none=False)
        _positive("baseline", "level", self.level)


@dataclass
class ReduceConfig:
    """Configuration of :func:`uedflow.pipeline.reduce.reduce`: one section per step.

    Examples
    --------
    >>> config = ReduceConfig.from_dict({"align": {"max_shift": 4}, "symmetrize": {"mod": 6}})
    >>> config.align.max_shift, config.symmetrize.mod, config.dark.subtract
    (4, 6, True)
    >>> ReduceConfig.from_dict(config.to_dict()) == config
    True
    """

    dark: DarkConfig = field(default_factory=DarkConfig)
    flat: FlatConfig = field(default_factory=FlatConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    center: CenterConfig = field(default_factory=CenterConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    reject: RejectConfig = field(default_factory=RejectConfig)
    average: AverageConfig = field(default_factory=AverageConfig)
    symmetrize: SymmetrizeConfig = field(default_factory=SymmetrizeConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    radial: RadialConfig = field(default_factory=RadialConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    @classmethod
    def from_dict(cls, config):
        """Configuration from a dict of sections (each a dict of keys).

        Raises
        ------
        ValueError
            If a section or key does not exist (the message names it and lists the valid
            ones), or a value is invalid.
        """
        sections = {f.name: f for f in fields(cls)}
        kwargs = {}
        for name, values in dict(config).items():
            if name not in sections:
                raise ValueError(f"unknown section [{name}] in the reduce configuration; "
                                 f"valid sections: {', '.join(sections)}")
            section = sections[name].default_factory
            if not isinstance(values, dict):
                raise ValueError(f"[{name}] must be a table of keys, got {values!r}")
            valid = [f.name for f in fields(section)]
            unknown = [key for key in values if key not in valid]
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} in section [{name}]; valid keys: "
                                 f"{', '.join(valid)}")
            kwargs[name] = section(**values)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path):
        """Configuration from a TOML file of ``[section]`` tables (see :meth:`from_dict`)."""
        with open(path, "rb") as file:
            try:
                config = tomllib.load(file)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not a valid TOML file ({exc})") from exc
        try:
            return cls.from_dict(config)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def to_dict(self):
        """The configuration as a JSON-serialisable dict of sections."""
        return asdict(self)
