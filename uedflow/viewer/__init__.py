"""A browser viewer of reduced runs: ``uedflow view STORE`` or :func:`serve` (needs bokeh).

The page shows the pattern at a delay, the radial ΔI/I map and the time traces of regions
drawn on them, computed lazily from the store (:mod:`uedflow.viewer.data`).
"""

from .server import ViewerServer, serve

__all__ = ["ViewerServer", "serve"]
