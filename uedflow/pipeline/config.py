"""Configuration of a run reduction: :class:`ReduceConfig`, one section per step.

Every section and every key is optional; what is not given keeps its default. A
configuration comes from a dict (:meth:`ReduceConfig.from_dict`) or a TOML file
(:meth:`ReduceConfig.from_toml`), and goes back to a JSON-serialisable dict
(:meth:`ReduceConfig.to_dict`) that rebuilds it exactly. Values are checked strictly when a
section is built (types, ranges), and against the run by :meth:`ReduceConfig.check` before
any pixel is read. The keys are documented in ``docs/pipeline.md``.
"""

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np

__all__ = ["KEY_HELP", "MAX_ITER", "MAX_UPSAMPLE", "ReduceConfig", "RunConfig"]

#: Largest ``[baseline] max_iter``.
MAX_ITER = 10_000
#: Largest ``[align] upsample_factor`` (shifts to 1/1000 px).
MAX_UPSAMPLE = 1000


#: One line on each section and key: the comments of :meth:`ReduceConfig.to_toml`.
KEY_HELP = {
    "run": "how the raw run's files are found (flags of the same names override these)",
    "run.pattern": "the frame files, relative to the run folder: {delay} (ps), {delay:fs}, "
                   "{delay:ns}, {position} or {delay_index} (through delays), {scan}, * any "
                   "characters; false: the preset's",
    "run.darks": "pattern of the dark frames; false: the preset's (dark_image/*.tif)",
    "run.flats": "pattern of the flat-field frames; false: the preset's (flat*/*.tif)",
    "run.pump_off": "pattern of the pump-off frames; false: the preset's (pump_off/*.tif)",
    "run.ignore": "image files left out silently; false: the preset's (mask.tif)",
    "run.preset": '"auto" (the first that fits), "uedflow" or "lab": patterns to start from',
    "run.delays": "delay table of {delay_index} or {position}: a file (one delay, or a "
                  "position and its delay, per line), a list of delays, or a table of "
                  "positions to delays; ps; false: the run's run.json",
    "run.missing": '"raise": stop at a (delay, scan) without a frame; "exclude": go on',
    "run.skip_bad": "go on without unreadable frames, frames that are folders and folders "
                    "that cannot be listed (listed in the provenance)",
    "dark": "dark subtraction",
    "dark.subtract": "subtract the mean of the run's dark frames (if it has any)",
    "flat": "flat-field (gain) correction",
    "flat.file": "flat-field image; false: the run's flat frames, if any",
    "flat.divide": "divide by the flat field",
    "mask": "pixel mask",
    "mask.file": 'mask image, non-zero on valid pixels; "auto": the run\'s own mask.tif; '
                 "false: none",
    "mask.from_collection": '"auto" (the darks if any, else the run), "darks", "run", or '
                            '"none" (false)',
    "mask.px_thresh": "allowed raw pixel values [low, high]; false: no bounds",
    "mask.std_thresh": "largest standard deviation of a pixel over the collection; false: "
                       "no cut",
    "mask.beam_block": "mask the beam block, found from the mean of many frames",
    "center": "pattern centre",
    "center.value": "[row, col] in px; false: found by autocenter on the reference",
    "align": "registration of every frame onto a reference",
    "align.enabled": "register the frames",
    "align.reference": '"first" present frame, or "early": the mean of the earliest delays',
    "align.early_delays": 'delays averaged by reference = "early"',
    "align.max_shift": "largest shift searched along each axis (px), below half the frame",
    "align.upsample_factor": "shifts to 1/upsample_factor px (at most 1000)",
    "normalize": "normalisation of the frames by their total in a region",
    "normalize.mode": '"delay" (within each delay), "run" (every frame to one level), or '
                      '"none" (false)',
    "normalize.ring": "[r1, r2] px about the centre; false: the valid pixels",
    "normalize.rect": "[row0, row1, col0, col1] px; false: none",
    "reject": "outlier rejection: whole frames by robust z-scores, pixels by a MAD cut",
    "reject.enabled": "reject outlier frames and pixels",
    "reject.intensity_z": "robust z-score of a frame's total beyond which it is rejected; "
                          "false: no cut",
    "reject.shift_z": "robust z-score of a frame's shift beyond which it is rejected; false: "
                      "no cut (a shift at the edge of the search window still is)",
    "reject.correlation_z": "robust z-score of a frame's correlation beyond which it is "
                            "rejected; false: no cut",
    "reject.pixel_z": "robust z-score of a pixel beyond which it is left out; false: no cut",
    "reject.exclude_scans": "scan numbers left out",
    "average": "average over scans",
    "average.align": "register the averages onto the reference",
    "symmetrize": "n-fold rotational symmetrisation of the averages",
    "symmetrize.mod": "n, a divisor of 360; false: none",
    "dynamics": "time zero and the equilibrium of the change ΔI/I",
    "dynamics.t0": "time zero, ps",
    "dynamics.reference": '"before_t0": the delays before t0; "pump_off": the pump-off frames',
    "radial": "azimuthal averages (delay, radius)",
    "radial.enabled": "compute the radial profiles",
    "baseline": "baseline of the radial profiles",
    "baseline.method": '"dwt" or "dt"; false: none',
    "baseline.max_iter": "iterations (at most 10000)",
    "baseline.level": "decomposition level; false: the largest",
    "compute": "the unit of work",
    "compute.task_memory": 'the most memory one task may hold: bytes, or a size like "1 GiB"',
}

#: Keys whose strings are paths, resolved against the folder of the TOML file they are in.
PATH_KEYS = (("mask", "file"), ("flat", "file"), ("run", "delays"))


def _error(section, key, expected, value):
    return ValueError(f"[{section}] {key}: expected {expected}, got {value!r}")


def _off(value, optional):
    """True if ``value`` switches an optional key off: None, or ``false`` (TOML has no null)."""
    return optional and (value is None or value is False)


def _bool(section, key, value):
    if not isinstance(value, bool):
        raise _error(section, key, "true or false", value)
    return value


def _int(section, key, value, low=1, high=None, optional=False):
    """An integer in ``[low, high]`` (a float such as 2.0 is refused: TOML tells them apart)."""
    if _off(value, optional):
        return None
    if (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low
            or (high is not None and value > high)):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise _error(section, key, f"an integer {bounds}" + (", or false" if optional else ""),
                     value)
    return int(value)


def _is_number(value):
    return (not isinstance(value, bool) and isinstance(value, int | float | np.integer
                                                       | np.floating) and math.isfinite(value))


def _number(section, key, value, positive=True, optional=False):
    """A finite number (> 0 if ``positive``), as a float."""
    if _off(value, optional):
        return None
    if not _is_number(value) or (positive and not value > 0):
        expected = "a number > 0" if positive else "a finite number"
        raise _error(section, key, expected + (", or false" if optional else ""), value)
    return float(value)


def _numbers(section, key, value, n, kind="finite numbers"):
    """A list of ``n`` finite numbers as floats (or, for ``kind="integers"``, ints)."""
    if _off(value, True):
        return None
    integers = kind == "integers"
    good = (lambda v: _is_number(v) and isinstance(v, int | np.integer)) if integers \
        else _is_number
    if not isinstance(value, list | tuple) or len(value) != n or not all(map(good, value)):
        raise _error(section, key, f"{n} {kind}, or false", value)
    return [int(v) if integers else float(v) for v in value]


def _string(section, key, value, choices=None, optional=False):
    """A string (one of ``choices`` if given); a path-like becomes a string."""
    if _off(value, optional):
        return None
    if choices is None and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value or (choices is not None and value not in choices):
        expected = ("one of " + ", ".join(repr(c) for c in choices) if choices is not None
                    else "a non-empty string")
        raise _error(section, key, expected + (", or false" if optional else ""), value)
    return value


def _none(value):
    """``false`` is ``"none"`` (for the keys whose "off" is the string ``"none"``)."""
    return "none" if value is False else value


class _Section:
    """A section validates (and normalises) its keys when built and again in ``check``."""

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Check the types and ranges of the keys; raise ValueError naming the key."""


#: Roles of the files of a run whose pattern the ``[run]`` section may give (``pattern`` is
#: the frames'), as :func:`uedflow.io.open_run` names them.
RUN_ROLES = ("darks", "flats", "pump_off", "ignore")


def _delay_table(value):
    """``[run] delays``: a file (path), a list of delays, or a table of positions to delays."""
    if _off(value, True):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list | tuple) and value and all(map(_is_number, value)):
        return [float(v) for v in value]
    if isinstance(value, Mapping) and value and all(map(_is_number, value.values())):
        try:
            keys = [float(k) for k in value]
        except (TypeError, ValueError):
            keys = [math.nan]
        if all(map(math.isfinite, keys)):
            return {str(k): float(v) for k, v in value.items()}
    raise _error("run", "delays", "a delay table file, a list of delays (ps), a table of "
                 "stage positions to delays (ps), or false", value)


@dataclass
class RunConfig(_Section):
    """How the raw run is found and opened (:func:`uedflow.io.open_run`): the frame pattern
    and the patterns of the other roles (None: the preset's), the preset, the delay table of
    ``{delay_index}`` or ``{position}``, and what to do about missing and bad frames."""

    pattern: str | None = None
    darks: str | None = None
    flats: str | None = None
    pump_off: str | None = None
    ignore: str | None = None
    preset: str = "auto"
    delays: str | list | dict | None = None
    missing: str = "raise"
    skip_bad: bool = False

    def validate(self):
        from ..io.runs import PRESETS

        for key in ("pattern", *RUN_ROLES):
            setattr(self, key, _string("run", key, getattr(self, key), optional=True))
        self.preset = _string("run", "preset", self.preset, ("auto", *PRESETS))
        self.delays = _delay_table(self.delays)
        self.missing = _string("run", "missing", self.missing, ("raise", "exclude"))
        self.skip_bad = _bool("run", "skip_bad", self.skip_bad)

    def open_kwargs(self):
        """The keyword arguments of :func:`uedflow.io.open_run` that this section gives."""
        patterns = {role: getattr(self, role) for role in RUN_ROLES if getattr(self, role)}
        if self.pattern is not None:
            patterns["frames"] = self.pattern
        return {"pattern": patterns or None, "preset": self.preset, "delays": self.delays,
                "missing": self.missing, "skip_bad": self.skip_bad}


@dataclass
class DarkConfig(_Section):
    """Dark subtraction: the mean of the run's dark frames (``run.attrs["darks"]``)."""

    subtract: bool = True

    def validate(self):
        self.subtract = _bool("dark", "subtract", self.subtract)


@dataclass
class FlatConfig(_Section):
    """Flat-field (gain) correction: frames are divided by the normalised flat field."""

    file: str | None = None
    divide: bool = True

    def validate(self):
        self.file = _string("flat", "file", self.file, optional=True)
        self.divide = _bool("flat", "divide", self.divide)


@dataclass
class MaskConfig(_Section):
    """Pixel mask: a mask file ("auto": the run's own), bad pixels from a collection, and the
    beam block found from the structure of the mean of many frames."""

    file: str | None = "auto"
    from_collection: str = "auto"
    px_thresh: list | None = field(default_factory=lambda: [0.0, 3e4])
    std_thresh: float | None = None
    beam_block: bool = True

    def validate(self):
        self.file = _string("mask", "file", self.file, optional=True)
        self.from_collection = _string("mask", "from_collection", _none(self.from_collection),
                                       ("auto", "darks", "run", "none"))
        self.px_thresh = _numbers("mask", "px_thresh", self.px_thresh, 2)
        if self.px_thresh is not None and not self.px_thresh[0] < self.px_thresh[1]:
            raise _error("mask", "px_thresh", "[low, high] with low < high", self.px_thresh)
        self.std_thresh = _number("mask", "std_thresh", self.std_thresh, optional=True)
        self.beam_block = _bool("mask", "beam_block", self.beam_block)


@dataclass
class CenterConfig(_Section):
    """Pattern centre ``[row, col]``; None: found by ``autocenter`` on the reference."""

    value: list | None = None

    def validate(self):
        self.value = _numbers("center", "value", self.value, 2)


@dataclass
class AlignConfig(_Section):
    """Sub-pixel masked registration of every frame onto a reference."""

    enabled: bool = True
    reference: str = "first"
    early_delays: int = 1
    max_shift: float = 8.0
    upsample_factor: int = 20

    def validate(self):
        self.enabled = _bool("align", "enabled", self.enabled)
        self.reference = _string("align", "reference", self.reference, ("first", "early"))
        self.early_delays = _int("align", "early_delays", self.early_delays)
        self.max_shift = _number("align", "max_shift", self.max_shift)
        self.upsample_factor = _int("align", "upsample_factor", self.upsample_factor,
                                    high=MAX_UPSAMPLE)


@dataclass
class NormalizeConfig(_Section):
    """Normalisation of the frames (``mode``) by their total intensity in a region."""

    mode: str = "delay"
    ring: list | None = None
    rect: list | None = None

    def validate(self):
        self.mode = _string("normalize", "mode", _none(self.mode), ("delay", "run", "none"))
        self.ring = _numbers("normalize", "ring", self.ring, 2)
        if self.ring is not None and not 0 <= self.ring[0] < self.ring[1]:
            raise _error("normalize", "ring", "radii [r1, r2] with 0 <= r1 < r2", self.ring)
        self.rect = _numbers("normalize", "rect", self.rect, 4, "integers")
        if self.ring is not None and self.rect is not None:
            raise ValueError("[normalize] ring, rect: give a ring or a rect, not both")


@dataclass
class RejectConfig(_Section):
    """Automatic outlier rejection: whole frames by robust z-scores, pixels by a MAD cut."""

    enabled: bool = True
    intensity_z: float | None = 5.0
    shift_z: float | None = 5.0
    correlation_z: float | None = 5.0
    pixel_z: float | None = 5.0
    exclude_scans: list = field(default_factory=list)

    def validate(self):
        self.enabled = _bool("reject", "enabled", self.enabled)
        for key in ("intensity_z", "shift_z", "correlation_z"):
            setattr(self, key, _number("reject", key, getattr(self, key), optional=True))
        self.pixel_z = _number("reject", "pixel_z", self.pixel_z, optional=True)
        scans = self.exclude_scans
        if not isinstance(scans, list | tuple) or not all(
                isinstance(s, int | np.integer) and not isinstance(s, bool) for s in scans):
            raise _error("reject", "exclude_scans", "a list of scan numbers (integers)", scans)
        self.exclude_scans = [int(s) for s in scans]


@dataclass
class AverageConfig(_Section):
    """Average over scans, then (``align``) registration of the averages onto the reference."""

    align: bool = True

    def validate(self):
        self.align = _bool("average", "align", self.align)


@dataclass
class SymmetrizeConfig(_Section):
    """Optional n-fold rotational symmetrisation of the averages (``mod``, e.g. 6)."""

    mod: int | None = None

    def validate(self):
        mod = self.mod = _int("symmetrize", "mod", self.mod, high=360, optional=True)
        if mod is not None and 360 % mod:
            raise _error("symmetrize", "mod", "a divisor of 360, or false", mod)


@dataclass
class DynamicsConfig(_Section):
    """Time zero (ps) and the equilibrium of ΔI/I: the mean of the delays before ``t0``
    (``reference = "before_t0"``) or the pump-off frames (``"pump_off"``)."""

    t0: float = 0.0
    reference: str = "before_t0"

    def validate(self):
        self.t0 = _number("dynamics", "t0", self.t0, positive=False)
        self.reference = _string("dynamics", "reference", self.reference,
                                 ("before_t0", "pump_off"))


@dataclass
class RadialConfig(_Section):
    """Azimuthal averages ``(delay, radius)`` of the averages, about the centre."""

    enabled: bool = True

    def validate(self):
        self.enabled = _bool("radial", "enabled", self.enabled)


@dataclass
class BaselineConfig(_Section):
    """Optional baseline of the radial profiles: ``method`` "dwt" or "dt" (None: none)."""

    method: str | None = None
    max_iter: int = 100
    level: int | None = None

    def validate(self):
        self.method = _string("baseline", "method", self.method, ("dwt", "dt"), optional=True)
        self.max_iter = _int("baseline", "max_iter", self.max_iter, high=MAX_ITER)
        self.level = _int("baseline", "level", self.level, optional=True)


@dataclass
class ComputeConfig(_Section):
    """The unit of work: ``task_memory``, the most memory one task may hold (bytes, or a
    string such as ``"1 GiB"``). A delay's frames are split into groups of scans that fit it,
    so the memory of a task does not grow with the run."""

    task_memory: int | str = "1 GiB"

    def validate(self):
        self.task_memory = _bytes("compute", "task_memory", self.task_memory)


def _bytes(section, key, value):
    """A size of at least 64 MiB in bytes, from an integer or a string such as "2 GiB"."""
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(value) if isinstance(value, str) else value
    except ValueError:
        size = None
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2**26:
        raise _error(section, key, 'a size of at least 64 MiB, in bytes or like "1 GiB"',
                     value)
    return int(size)


@dataclass
class ReduceConfig:
    """Configuration of :func:`uedflow.pipeline.reduce.reduce`: one section per step.

    Values are strict: a boolean key takes only true/false; an integer key only an integer
    (``2.0`` is refused, as TOML tells ``2`` and ``2.0`` apart); a number key an integer or
    a finite float (stored as a float; ``inf`` and ``nan`` are refused); a string key only a
    string. An optional key (one that may be None: ``run.pattern`` and the other patterns,
    ``run.delays``, ``mask.file``, ``mask.px_thresh``, ``mask.std_thresh``, ``flat.file``,
    ``center.value``, ``normalize.ring``, ``normalize.rect``, ``reject.intensity_z``,
    ``reject.shift_z``, ``reject.correlation_z``, ``reject.pixel_z``,
    ``symmetrize.mod``, ``baseline.method``, ``baseline.level``) is switched off by ``false``
    (TOML has no null), which becomes None; ``false`` is ``"none"`` for
    ``mask.from_collection`` and ``normalize.mode``. Every error names the section and key,
    and the TOML file for :meth:`from_toml`. :meth:`to_toml` writes the whole configuration,
    commented, as TOML that reads back equal.

    Attributes
    ----------
    source : str or None
        The TOML file the configuration was read from (prefixes every error message); not
        part of the configuration (equality, :meth:`to_dict`).

    Examples
    --------
    >>> config = ReduceConfig.from_dict({"align": {"max_shift": 4}, "symmetrize": {"mod": 6},
    ...                                  "mask": {"file": False}})
    >>> config.align.max_shift, config.symmetrize.mod, config.mask.file, config.dark.subtract
    (4.0, 6, None, True)
    >>> ReduceConfig.from_dict(config.to_dict()) == config
    True
    >>> config.check((256, 256), delays=[-1.0, 0.5, 1.0], scans=[0, 1, 2])
    >>> ReduceConfig.from_dict({"reject": {"exclude_scans": [7]}}).check(
    ...     (256, 256), delays=[-1.0, 0.5], scans=[0, 1, 2])
    Traceback (most recent call last):
    ...
    ValueError: [reject] exclude_scans: scan 7 is not in the run (scans: 0, 1, 2)
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
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    source = None  # not a field: outside equality and to_dict

    def __post_init__(self):
        for f in fields(self):
            if not isinstance(getattr(self, f.name), f.default_factory):
                raise ValueError(f"[{f.name}] must be a {f.default_factory.__name__}, got "
                                 f"{getattr(self, f.name)!r}")

    @classmethod
    def from_dict(cls, config):
        """Configuration from a dict of sections (each a dict of keys).

        Raises
        ------
        ValueError
            If a section or key does not exist (the message names it and lists the valid
            ones), or a value is invalid (the message names the section and key).
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"the reduce configuration must be a table of sections, got "
                             f"{config!r}")
        sections = {f.name: f.default_factory for f in fields(cls)}
        kwargs = {}
        for name, values in config.items():
            if name not in sections:
                raise ValueError(f"unknown section [{name}] in the reduce configuration; "
                                 f"valid sections: {', '.join(sections)}")
            if not isinstance(values, Mapping):
                raise ValueError(f"[{name}] must be a table of keys, got {values!r}")
            valid = [f.name for f in fields(sections[name])]
            unknown = [key for key in values if key not in valid]
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} in section [{name}]; valid keys: "
                                 f"{', '.join(valid)}")
            kwargs[name] = sections[name](**values)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path):
        """Configuration from a TOML file of ``[section]`` tables (see :meth:`from_dict`).

        Relative paths (``mask.file``, ``flat.file``, ``run.delays``) are taken from the
        folder of the TOML file, and made absolute. Every error message, here and in
        :meth:`check`, starts with ``path``.
        """
        with open(path, "rb") as file:
            try:
                config = tomllib.load(file)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not a valid TOML file ({exc})") from exc
        try:
            config = cls.from_dict(config)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        folder = os.path.dirname(os.path.abspath(path))
        for section, key in PATH_KEYS:
            value = getattr(getattr(config, section), key)
            if isinstance(value, str) and value != "auto":
                resolved = os.path.normpath(os.path.join(folder, os.path.expanduser(value)))
                # [run] delays may also name a dataset or attribute inside an HDF5 run
                if (section, key) != ("run", "delays") or os.path.exists(resolved):
                    setattr(getattr(config, section), key, resolved)
        config.source = os.fspath(path)
        return config

    def to_dict(self):
        """The configuration as a JSON-serialisable dict of sections."""
        return asdict(self)

    def to_toml(self, comments=True):
        """The whole configuration as TOML, every key given, that :meth:`from_toml` reads back
        to an equal configuration (None is written ``false``).

        Parameters
        ----------
        comments : bool, optional
            A comment line above each section and key (:data:`KEY_HELP`).

        Returns
        -------
        str
        """
        lines = []
        for section, values in self.to_dict().items():
            if comments:
                lines += ["", *_comment(KEY_HELP[section])]
            lines.append(f"[{section}]")
            for key, value in values.items():
                if comments:
                    lines += _comment(KEY_HELP[f"{section}.{key}"])
                lines.append(f"{key} = {_toml(value)}")
        return "\n".join(lines).lstrip("\n") + "\n"

    def check(self, shape, delays, scans, *, pump_off=False):
        """Check the configuration against a run, before any pixel is read.

        Only arithmetic on the arguments: nothing is allocated whatever the values.

        Parameters
        ----------
        shape : tuple of int
            Frame shape ``(rows, cols)``.
        delays : array_like of float
            The run's delays, ps.
        scans : array_like of int
            The run's scan numbers.
        pump_off : bool, optional
            Whether the run has pump-off frames.

        Raises
        ------
        ValueError
            Naming the section and key (and the TOML file, see :attr:`source`): a key whose
            value has been changed to an invalid one since the configuration was built;
            ``align.max_shift`` not below half the smaller frame side;
            ``align.early_delays`` beyond the number of delays; ``center.value`` outside the
            frame; ``normalize.rect`` not a non-empty rectangle inside the frame;
            ``normalize.ring`` beyond the frame diagonal; ``reject.exclude_scans`` naming a
            scan the run does not have; ``dynamics.t0`` with no delay before it (reference
            "before_t0"); ``dynamics.reference = "pump_off"`` without pump-off frames;
            ``baseline.level`` above log2 of the frame diagonal.
        """
        try:
            self.__post_init__()
            for f in fields(self):
                getattr(self, f.name).validate()
            _check_data(self, shape, np.asarray(delays, dtype=float).ravel(),
                        np.asarray(scans).ravel(), bool(pump_off))
        except ValueError as exc:
            if self.source is None:
                raise
            raise ValueError(f"{self.source}: {exc}") from exc


def _comment(text, width=92):
    import textwrap

    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def _toml(value):
    """A TOML value: None as false, strings quoted (JSON escapes are TOML's), lists, tables."""
    import json

    if value is None or isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}"
                               for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _check_data(config, shape, delays, scans, pump_off):
    """The checks of :meth:`ReduceConfig.check` against the run (see there)."""
    rows, cols = (int(n) for n in shape)
    frame = f"a {rows} x {cols} frame"
    diagonal = math.hypot(rows, cols)

    max_shift = config.align.max_shift
    if max_shift >= min(rows, cols) / 2:
        raise ValueError(f"[align] max_shift: {max_shift:g} px is not less than half the "
                         f"smaller side of {frame} ({min(rows, cols) / 2:g} px)")
    if config.align.early_delays > len(delays):
        raise ValueError(f"[align] early_delays: {config.align.early_delays}, but the run has "
                         f"{len(delays)} delays")
    if config.center.value is not None:
        row, col = config.center.value
        if not (0 <= row <= rows - 1 and 0 <= col <= cols - 1):
            raise ValueError(f"[center] value: [{row:g}, {col:g}] is outside {frame} (rows "
                             f"0 to {rows - 1}, cols 0 to {cols - 1})")
    rect = config.normalize.rect
    if rect is not None:
        r0, r1, c0, c1 = rect
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise ValueError(f"[normalize] rect: {rect} is not a non-empty rectangle [row0, "
                             f"row1, col0, col1] inside {frame} (0 <= row0 < row1 <= {rows}, "
                             f"0 <= col0 < col1 <= {cols})")
    ring = config.normalize.ring
    if ring is not None and ring[1] > diagonal:
        raise ValueError(f"[normalize] ring: radius {ring[1]:g} px is beyond the diagonal of "
                         f"{frame} ({diagonal:.1f} px)")
    missing = [s for s in config.reject.exclude_scans if not np.isin(s, scans)]
    if missing:
        shown = [str(s) for s in scans] if len(scans) <= 10 else [
            *(str(s) for s in scans[:3]), "...", str(scans[-1])]
        raise ValueError(f"[reject] exclude_scans: scan {missing[0]} is not in the run (scans: "
                         f"{', '.join(shown)})")
    if config.dynamics.reference == "before_t0" and not (delays < config.dynamics.t0).any():
        earliest = f"the earliest delay is {delays.min():g} ps" if delays.size else "no delay"
        raise ValueError(f"[dynamics] t0: no delay before time zero (t0 = "
                         f"{config.dynamics.t0:g} ps, {earliest}); set t0 later, or "
                         "reference = \"pump_off\" for a run with pump-off frames")
    if config.dynamics.reference == "pump_off" and not pump_off:
        raise ValueError("[dynamics] reference: \"pump_off\", but the run has no pump-off "
                         "frames")
    level = config.baseline.level
    if level is not None and 2**level > diagonal:
        raise ValueError(f"[baseline] level: {level} is above log2 of the diagonal of {frame} "
                         f"(at most {int(math.log2(diagonal))})")
