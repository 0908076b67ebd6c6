"""The viewer's page: one bokeh Document per browser tab, on a lazily opened reduced store.

Everything shown is computed by :mod:`uedflow.viewer.data` (frames, windows, traces) and the
``.ued`` accessor (fits, time zero); this module only lays it out and wires the callbacks.
"""

import asyncio
import html
import json
from functools import partial
from pathlib import Path

import numpy as np
from bokeh.document import without_document_lock
from bokeh.events import MouseMove, RangesUpdate, SelectionGeometry
from bokeh.layouts import column, row
from bokeh.models import (
    BoxAnnotation,
    BoxSelectTool,
    Button,
    ColumnDataSource,
    CustomJS,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    LinearColorMapper,
    LogColorMapper,
    NumericInput,
    RadioButtonGroup,
    Select,
    Slider,
    Span,
    TableColumn,
    TextInput,
    Toggle,
)
from bokeh.palettes import Category10, RdBu11, Viridis256
from bokeh.plotting import figure
from matplotlib.ticker import MaxNLocator

from ..pipeline.accessor import provenance
from ..pipeline.store import open_reduced
from .data import (
    RADIAL,
    check_store,
    color_limits,
    lattice_overlay,
    live_info,
    live_label,
    mask_window,
    pattern_image,
    radius_trace,
    region_from_box,
    region_label,
    region_trace,
    traces_csv,
    visible_window,
)

__all__ = ["Viewer", "build_document", "error_page"]

#: Side of the pattern's plot frame, screen pixels: frames travel downsampled to it.
PATTERN_SIZE = 560
#: Room for the y axes of the map and the traces (px): their frames stay aligned and still.
BORDER = 80
COLORS = Category10[10]
DIVERGING = RdBu11  # blue negative, red positive
MODES = ["linear", "log", "ΔI/I"]
KINDS = ["rect", "disk", "ring"]
TRACE_VARS = ["change", "intensity"]
TRACE_LABELS = ["ΔI/I", "mean intensity (counts)"]
ERROR_STYLE = "color: #b00020; font-weight: bold; white-space: pre-wrap;"

DOWNLOAD = """
const text = source.data.text[0];
if (!text) { return; }
const blob = new Blob([text], {type: "text/csv"});
const link = document.createElement("a");
link.href = URL.createObjectURL(blob);
link.download = filename;
document.body.appendChild(link);
link.click();
link.remove();
"""

SAVE_PNG = """
(async () => {
    for (const [figure, name] of figures) {
        const view = Bokeh.index.find_one(figure);
        const blob = await view.export("png").to_blob();
        const link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = `${stem}-${name}.png`;
        document.body.appendChild(link);
        link.click();
        link.remove();
    }
})();
"""

READOUT = """
const d = source.data;
if (!d.image.length) { return; }
const row = Math.floor(cb_obj.y), col = Math.floor(cb_obj.x);
if (row < 0 || col < 0 || row >= shape[0] || col >= shape[1]) { div.text = ""; return; }
const image = d.image[0], f = d.factor[0];
const i = Math.floor((row - d.y[0]) / f), j = Math.floor((col - d.x[0]) / f);
const [h, w] = image.shape;
let value = NaN;
if (i >= 0 && j >= 0 && i < h && j < w) { value = image[i * w + j]; }
const r = Math.hypot(row - center[0], col - center[1]);
let text = `(row, col) = (${row}, ${col}) · ${unit} ${value.toPrecision(4)}`;
text += ` · r = ${r.toFixed(1)} px`;
if (qr.length) {
    const k = Math.min(Math.floor(r), qr.length - 2), t = r - k;
    text += ` · q = ${(qv[k] * (1 - t) + qv[k + 1] * t).toFixed(3)} 1/Å`;
}
div.text = text;
"""


def error_page(store, exc):
    """A page that says why ``store`` cannot be shown."""
    message = html.escape(f"{type(exc).__name__}: {exc}")
    return column(
        Div(text=f"<h2>uedflow view: {html.escape(str(store))}</h2>"),
        Div(text=message, name="error", styles={"color": "#b00020", "font-weight": "bold"},
            width=900))


def _open(path, store, q_calibration=None):
    """The reduced Dataset at ``path`` as the viewer shows it: checked (``store`` named in
    the error) and calibrated."""
    ds = open_reduced(path)
    check_store(ds, store)
    if q_calibration is not None:
        ds = ds.ued.calibrate_q(q_calibration)
    return ds


def build_document(doc, store, q_calibration=None):
    """Fill a bokeh Document with the viewer of ``store`` (or the reason it cannot be);
    ``q_calibration``: a :class:`uedflow.analysis.QCalibration` for q on the profiles and the
    cursor readout. A link (the ``-o`` of ``uedflow reduce --follow``) is followed: each new
    version it points at is shown (:meth:`Viewer.follow`)."""
    doc.title = f"uedflow view {Path(store).name}"
    opener = partial(_open, store=store, q_calibration=q_calibration)
    try:
        version = Path(store).resolve()  # a link: the version shown
        viewer = Viewer(opener(version), store)
    except Exception as exc:  # shown in the page: the store is not viewable
        doc.add_root(error_page(store, exc))
        return None
    doc.add_root(viewer.layout)
    if Path(store).is_symlink():
        viewer.follow(version, opener)
    return viewer


def _trace(ds, region):
    """The trace of a region of ``ds``: a radius range's or a region of the pattern's."""
    if "radii" in region:
        return radius_trace(ds, *region["radii"])
    return region_trace(ds, region)


def _trace_key(ds, region):
    """A region's trace in the cache: per region and time zero."""
    return json.dumps(region), ds.ued.time_zero, ds["delay"].values[0]


def _q_table(ds, shape):
    """Radii 0, 1, ... px and their q (1/Å) for the cursor readout; empty without a
    calibration."""
    calibration = ds.ued.q_calibration
    if calibration is None:
        return [], []
    radius = np.arange(int(np.hypot(*shape)) + 2, dtype=float)
    return radius.tolist(), np.asarray(calibration.q(radius), dtype=float).tolist()


class Viewer:
    """The widgets and state of one page on a reduced Dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A reduced Dataset, lazy (:func:`uedflow.open_reduced`).
    store : path-like
        Where it comes from (shown in the page).

    Attributes
    ----------
    layout : bokeh.models.LayoutDOM
        The page's root.
    regions : dict
        ``{name: {"region": dict, "trace": Dataset, "color": str, "renderers": list}}``.
    version : pathlib.Path or None
        The version shown of a live store (:meth:`follow`), else None.
    """

    def __init__(self, ds, store):
        self.ds, self.store = ds, Path(store)
        self.shape = ds.sizes["y"], ds.sizes["x"]
        self._take_geometry()
        self.window = (0, self.shape[0], 0, self.shape[1])
        self.limits = {}
        self._reading = self._again = False
        self.regions, self.cache, self.count = {}, {}, 0
        self.fit_renderer = None
        self.version = self._watcher = None
        self._loading, self._failed = False, None
        self.has_radial = all(name in ds.variables for name in RADIAL)
        self._build_pattern()
        self.map = self.profile = None
        if self.has_radial:
            self._build_map()
            self._build_profile()
        self._build_traces()
        self.figures = [f for f in (self.pattern, self.map, self.profile, self.traces) if f]
        self._build_controls()
        self.show_frame()
        no_radial = Div(text="<i>No radial profiles in this store (reduced with [radial] "
                        "enabled = false): no radial map, profile or radius ranges.</i>",
                        width=560)
        self.layout = column(
            row(Div(text=f"<h2>uedflow view: {html.escape(str(self.store))}</h2>"),
                self.save_png),
            self.live, self.status,
            row(column(self.pattern_controls, self.pattern, self.readout,
                       *[self.profile] if self.has_radial else []),
                column(self.map if self.has_radial else no_radial, self.traces,
                       self.trace_controls, self.table, self.fit_div)))

    def _take_geometry(self):
        """The centre (row, col) and the mask of ``self.ds``."""
        self.center = tuple(float(v) for v in self.ds["center"].values)
        self.mask = self.ds["mask"].values.astype(bool) if "mask" in self.ds else None

    # ------------------------------------------------------------------ building

    def _build_pattern(self):
        ny, nx = self.shape
        scale = PATTERN_SIZE / max(ny, nx)
        p = figure(name="pattern", frame_width=round(nx * scale), frame_height=round(ny * scale),
                   min_border_left=BORDER,
                   x_range=(0, nx), y_range=(ny, 0), tools="pan,wheel_zoom,box_select,reset,save",
                   active_drag="box_select", active_scroll="wheel_zoom",
                   toolbar_location="above", x_axis_label="col (px)", y_axis_label="row (px)")
        self.frame_source = ColumnDataSource(
            data={"image": [], "x": [], "y": [], "dw": [], "dh": [], "factor": []},
            name="frame")
        self.mappers = {
            "linear": LinearColorMapper(palette=Viridis256, nan_color="#808080"),
            "log": LogColorMapper(palette=Viridis256, nan_color="#808080",
                                  low_color="#000000"),
            "ΔI/I": LinearColorMapper(palette=DIVERGING, nan_color="#808080")}
        # one image per scale, sharing the frame: a glyph's colour mapper cannot be swapped
        self.images = {mode: p.image(image="image", x="x", y="y", dw="dw", dh="dh",
                                     source=self.frame_source, color_mapper=mapper,
                                     visible=mode == "linear", name=f"image-{mode}")
                       for mode, mapper in self.mappers.items()}
        self.mask_source = ColumnDataSource(data={"image": [], "x": [], "y": [], "dw": [],
                                                  "dh": []})
        self.mask_image = p.image(image="image", x="x", y="y", dw="dw", dh="dh",
                                  source=self.mask_source, global_alpha=0.45, visible=False,
                                  color_mapper=LinearColorMapper(palette=["#ff00ff"], low=0,
                                                                 high=1, nan_color=(0, 0, 0, 0)))
        row0, col0 = self.center
        self.center_marker = p.scatter([col0 + 0.5], [row0 + 0.5], marker="cross", size=18,
                                       line_width=2, color="red")
        self.lattice_source = ColumnDataSource(name="peaks", data={"x": [], "y": []})
        self.zones_source = ColumnDataSource(name="zones", data={"xs": [], "ys": []})
        self.lattice = [
            p.multi_line(xs="xs", ys="ys", source=self.zones_source, line_color="white",
                         line_alpha=0.8, line_dash="dotted", visible=False),
            p.scatter(x="x", y="y", source=self.lattice_source, marker="circle", size=12,
                      fill_alpha=0, line_color="cyan", line_width=1.5, visible=False)]
        # box selection draws regions: on an empty renderer, so that nothing else is selected
        selector = p.scatter(x=[], y=[])
        p.select_one(BoxSelectTool).renderers = [selector]
        p.on_event(SelectionGeometry, self._on_pattern_box)
        p.on_event(RangesUpdate, self._on_ranges)
        self.readout = Div(text="", name="readout", width=PATTERN_SIZE)
        qr, qv = _q_table(self.ds, self.shape)
        self._readout_js = CustomJS(
            args={"source": self.frame_source, "div": self.readout, "shape": list(self.shape),
                  "center": list(self.center), "qr": qr, "qv": qv, "unit": "counts"},
            code=READOUT)
        p.js_on_event(MouseMove, self._readout_js)
        self.pattern = p

    def _load_radial(self):
        """The radial ΔI/I and its error, in memory (delays × radii: small)."""
        self.radial = np.asarray(self.ds["radial_change"].values, dtype=np.float32)
        self.radial_error = np.asarray(self.ds["radial_change_error"].values, dtype=np.float32)

    def _build_map(self):
        p = figure(name="map", width=560, height=280, min_border_left=BORDER,
                   x_range=(0, 1), y_range=(0, 1), tools="pan,wheel_zoom,xbox_select,reset,save",
                   active_drag="xbox_select", toolbar_location="above",
                   x_axis_label="radius (px)", y_axis_label="delay (ps)",
                   title="radial ΔI/I (drag a radius range)")
        self.map_source = ColumnDataSource(data={"image": []}, name="map_image")
        self.map_mapper = LinearColorMapper(palette=DIVERGING, nan_color="#808080")
        self.map_image = p.image(image="image", x=0, y=0, dw=1, dh=1, source=self.map_source,
                                 color_mapper=self.map_mapper)
        if "q" in self.ds.coords:   # calibrated: the radii labelled with their q
            p.xaxis.axis_label = "q (1/Å)"
            p.title.text = "radial ΔI/I (drag a q range)"
        self.delay_span = Span(location=0.5, dimension="width", line_color="black",
                               line_dash="dashed")
        p.add_layout(self.delay_span)
        selector = p.scatter(x=[], y=[])
        p.select_one(BoxSelectTool).renderers = [selector]
        p.on_event(SelectionGeometry, self._on_map_box)
        self.map, self._map_extent = p, None
        self._show_radial()

    def _show_radial(self):
        """The radial ΔI/I of ``self.ds`` on the map: its image, colour limits, delays (and q)
        on the axes, and its extent where it changed (else the map keeps its zoom)."""
        self._load_radial()
        radius = self.ds["radius"].values.astype(float)
        step = float(np.median(np.diff(radius))) if radius.size > 1 else 1.0
        delays = self.ds["delay"].values
        n = delays.size
        p = self.map
        extent = (radius[0], radius[-1] + step, n)
        if extent != self._map_extent:
            p.x_range.update(start=extent[0], end=extent[1])
            p.y_range.update(start=0, end=n)
            self.map_image.glyph.update(x=extent[0], dw=extent[1] - extent[0], dh=n)
            self._map_extent = extent
        self.map_mapper.low, self.map_mapper.high = color_limits(self.radial, symmetric=True)
        self.map_source.data = {"image": [self.radial]}
        ticks = np.unique(np.linspace(0, n - 1, min(n, 8)).round().astype(int))
        p.yaxis.ticker = [float(t) + 0.5 for t in ticks]
        p.yaxis.major_label_overrides = {float(t) + 0.5: f"{delays[t]:g}" for t in ticks}
        if "q" in self.ds.coords:
            q = self.ds["q"].values.astype(float)
            ticks = MaxNLocator(8).tick_values(q.min(), q.max())
            ticks = ticks[(ticks >= q.min()) & (ticks <= q.max())]
            where = np.interp(ticks, q, radius) + step / 2
            p.xaxis.ticker = where.tolist()
            p.xaxis.major_label_overrides = {float(w): f"{t:g}" for w, t in zip(where, ticks,
                                                                               strict=True)}
        self.radius_step = step

    def _build_profile(self):
        """The radial ΔI/I at the slider's delay, against q when calibrated, else radius."""
        self.profile_x = "q" if "q" in self.ds.coords else "radius"
        label = "q (1/Å)" if self.profile_x == "q" else "radius (px)"
        p = figure(name="profile", frame_width=self.pattern.frame_width, height=240,
                   min_border_left=BORDER,
                   tools="pan,wheel_zoom,xbox_select,reset,save", active_drag="xbox_select",
                   toolbar_location="above", x_axis_label=label, y_axis_label="ΔI/I",
                   title=f"radial ΔI/I at the delay (drag a {self.profile_x} range)")
        self.profile_source = ColumnDataSource(name="profile_data", data={
            "x": [], "change": [], "lower": [], "upper": []})
        p.segment(x0="x", y0="lower", x1="x", y1="upper", source=self.profile_source,
                  line_color="#999999")
        p.line(x="x", y="change", source=self.profile_source, line_color="black")
        selector = p.scatter(x=[], y=[])
        p.select_one(BoxSelectTool).renderers = [selector]
        p.on_event(SelectionGeometry, self._on_profile_box)
        self.profile = p

    def _build_traces(self):
        p = figure(name="traces", width=560, height=280, min_border_left=BORDER,
                   tools="pan,wheel_zoom,box_zoom,reset,save",
                   toolbar_location="above", x_axis_label="delay (ps)", y_axis_label="ΔI/I",
                   title="time traces (± standard error)")
        self.traces = p
        self.table_source = ColumnDataSource(data={"name": [], "region": [], "color": []},
                                             name="regions")
        swatch = HTMLTemplateFormatter(
            template='<span style="color: <%= value %>; font-size: 150%;">■</span>')
        self.table = DataTable(source=self.table_source, width=560, height=140,
                               index_position=None, name="region_table", columns=[
                                   TableColumn(field="color", title="", width=30,
                                               formatter=swatch),
                                   TableColumn(field="name", title="name", width=120),
                                   TableColumn(field="region", title="region", width=400)])
        self.csv_source = ColumnDataSource(data={"text": [""]}, name="csv")

    def _build_controls(self):
        n = self.ds.sizes["delay"]
        self.status = Div(text="", name="status", width=1140)
        self.live = Div(text="", name="live", width=1140, visible=False)
        self.slider = Slider(start=0, end=max(n - 1, 1), value=0, step=1, title="delay",
                             show_value=False, name="delay", width=300, disabled=n < 2)
        self.slider.on_change("value", lambda attr, old, new: self.show_frame())
        self.play = Toggle(label="▶ play", width=70, name="play")
        self.play.on_change("active", self._on_play)
        self.mode = RadioButtonGroup(labels=MODES, active=0, name="mode")
        self.mode.on_change("active", lambda attr, old, new: self._new_limits())
        self.show_mask = Toggle(label="mask", active=False, width=60, name="show_mask")
        self.show_mask.on_change("active", lambda attr, old, new: self.show_frame())
        self.show_center = Toggle(label="centre", active=True, width=60, name="show_center")
        self.show_center.js_link("active", self.center_marker, "visible")
        self.show_lattice = Toggle(label="peaks & zones", active=False, width=110,
                                   name="show_lattice")
        self.show_lattice.on_change("active", self._on_lattice)
        self.kind = Select(options=KINDS, value="rect", width=80, name="kind",
                           title="region to draw")
        self.pattern_controls = column(row(self.slider, self.play),
                                       row(self.mode, self.show_mask, self.show_center,
                                           self.show_lattice, self.kind))

        self.remove = Button(label="remove", width=80, name="remove")
        self.remove.on_click(self._on_remove)
        self.new_name = TextInput(value="", width=90, placeholder="new name", name="new_name")
        self.rename = Button(label="rename", width=70, name="rename")
        self.rename.on_click(self._on_rename)
        self.fit_button = Button(label="fit", width=60, name="fit", button_type="primary")
        self.fit_button.on_click(self._on_fit)
        self.t0 = NumericInput(value=0.0, mode="float", width=90, title="new time zero (ps)",
                               name="t0")
        self.shift = Button(label="shift time zero", width=120, name="shift")
        self.shift.on_click(self._on_shift)
        self.export = Button(label="export CSV", width=100, name="export")
        self.export.js_on_event("button_click", CustomJS(
            args={"source": self.csv_source, "filename": f"{self.store.stem}-traces.csv"},
            code=DOWNLOAD))
        self.save_png = Button(label="export PNG", width=100, name="save_png")
        self.save_png.js_on_event("button_click", CustomJS(
            args={"figures": [[f, f.name] for f in self.figures],
                  "stem": self.store.stem}, code=SAVE_PNG))
        self.quantity = RadioButtonGroup(labels=["ΔI/I traces", "intensity traces"], active=0,
                                         name="quantity", align="end")
        self.quantity.on_change("active", self._on_quantity)
        self.trace_controls = column(
            row(self.quantity, self.remove, self.new_name, self.rename, self.export),
            row(self.fit_button, self.t0, self.shift, align="end"))
        self.fit_div = Div(text="", name="fit_result", width=560)

    # ------------------------------------------------------------------ state

    @property
    def mode_name(self):
        return MODES[self.mode.active]

    def say(self, text, error=False):
        """Show a message (an error in red) above the plots."""
        style = ERROR_STYLE if error else "color: #333;"
        self.status.text = f'<span style="{style}">{html.escape(text)}</span>'

    def _guarded(self, action, *args):
        """Run ``action``; an error is shown in the page instead of the terminal."""
        try:
            action(*args)
        except Exception as exc:
            self.say(f"{type(exc).__name__}: {exc}", error=True)

    # ------------------------------------------------------------------ the pattern

    def show_frame(self):
        """Show the frame of the slider's delay in the current window: read in the background
        when served, and while one is read only the latest request waits (a dragged slider
        shows the frames it can, then the last)."""
        if self._reading:
            self._again = True
            return
        self._reading = True
        state = (int(self.slider.value), self.window, self.mode_name, self.show_mask.active)
        self._background(partial(self._read_frame, *state), partial(self._show, state),
                         failed=self._frame_done)

    def _read_frame(self, index, window, mode_name, masked):
        mode = "change" if mode_name == "ΔI/I" else "counts"
        values, factor = pattern_image(self.ds, index, window, mode, max_pixels=PATTERN_SIZE)
        mask = (mask_window(self.mask, window, factor) if masked and self.mask is not None
                else None)
        return values, factor, mask

    def _show(self, state, result):
        try:
            index, window, mode_name, _ = state
            values, factor, mask = result
            delay = float(self.ds["delay"].values[index])
            self.slider.title = f"delay {delay:g} ps ({index + 1} of {self.ds.sizes['delay']})"
            if self.has_radial:
                self.delay_span.location = index + 0.5
                change, error = self.radial[index], self.radial_error[index]
                self.profile_source.data = {"x": self.ds[self.profile_x].values,
                                            "change": change, "lower": change - error,
                                            "upper": change + error}
            key = (mode_name, window)
            if key not in self.limits:
                self.limits = {key: self._limits(values, mode_name)}
            self.mappers[mode_name].low, self.mappers[mode_name].high = self.limits[key]
            for name, image in self.images.items():
                image.visible = name == mode_name
            row0, row1, col0, col1 = window
            place = {"x": [col0], "y": [row0], "dw": [col1 - col0], "dh": [row1 - row0]}
            self.frame_source.data = {"image": [values], "factor": [factor], **place}
            if mask is not None:
                self.mask_source.data = {"image": [mask], **place}
            self.mask_image.visible = mask is not None
        finally:
            self._frame_done()

    def _frame_done(self):
        self._reading = False
        if self._again:
            self._again = False
            self.show_frame()

    @staticmethod
    def _limits(values, mode_name):
        if mode_name == "ΔI/I":
            return color_limits(values, symmetric=True)
        if mode_name == "log":
            positive = values[values > 0]
            low, high = color_limits(positive) if positive.size else (1.0, 10.0)
            return max(low, 1e-3), max(high, 2 * max(low, 1e-3))
        return color_limits(values)

    def _new_limits(self):
        self.limits = {}
        self.show_frame()

    def _on_ranges(self, event):
        window = visible_window(self.shape, event.x0, event.x1, event.y0, event.y1)
        if window != self.window:
            self.window = window
            self.show_frame()

    def _on_lattice(self, attr, old, new):
        if new and not len(self.lattice_source.data["x"]):
            self._guarded(self._background, partial(lattice_overlay, self.ds),
                          self._draw_lattice, "finding the Bragg peaks and their Brillouin "
                          "zones ...")
        for renderer in self.lattice:
            renderer.visible = new

    def _draw_lattice(self, found):
        peaks, zones = found
        self.lattice_source.data = {"x": peaks[:, 1] + 0.5, "y": peaks[:, 0] + 0.5}
        closed = [np.vstack([z, z[:1]]) + 0.5 for z in zones if len(z)]
        self.zones_source.data = {"xs": [z[:, 1] for z in closed],
                                  "ys": [z[:, 0] for z in closed]}
        self.say(f"{len(peaks)} Bragg peaks, {len(closed)} Brillouin zones")

    def _on_play(self, attr, old, new):
        doc = self.pattern.document
        if new:
            self._player = doc.add_periodic_callback(self._advance, 400)
        elif getattr(self, "_player", None) is not None:
            doc.remove_periodic_callback(self._player)
            self._player = None

    def _advance(self):
        self.slider.value = (int(self.slider.value) + 1) % self.ds.sizes["delay"]

    # ------------------------------------------------------------------ regions

    def _on_pattern_box(self, event):
        geometry = event.geometry
        if not event.final or geometry.get("type") != "rect":
            return
        region = region_from_box(self.kind.value, geometry["x0"], geometry["x1"],
                                 geometry["y0"], geometry["y1"], self.center, self.shape)
        if region is None:
            self.say("the box is too small for a region: drag a larger one", error=True)
            return
        self._guarded(self.add_region, region)

    def _on_map_box(self, event):
        # the radii whose cells' middles are in the box
        self._on_radius_box(event, self.ds["radius"].values + self.radius_step / 2)

    def _on_profile_box(self, event):
        self._on_radius_box(event, self.ds[self.profile_x].values)

    def _on_radius_box(self, event, positions):
        """A radius range: the radii whose ``positions`` (along the x axis) are in the box."""
        geometry = event.geometry
        if not event.final or geometry.get("type") != "rect":
            return
        low, high = sorted((geometry["x0"], geometry["x1"]))
        radius = self.ds["radius"].values[(positions >= low) & (positions <= high)]
        if not radius.size:
            self.say("the range holds no radius: drag a wider one", error=True)
            return
        self._guarded(self.add_region, {"radii": (float(radius[0]), float(radius[-1]))})

    def trace_of(self, region):
        """The trace of a region (cached per time zero)."""
        key = _trace_key(self.ds, region)
        if key not in self.cache:
            self.cache[key] = _trace(self.ds, region)
        return self.cache[key]

    def _background(self, compute, apply, message=None, failed=None):
        """``apply(compute())``, the computation in a worker thread when served (the page
        stays live, and says ``message`` meanwhile), at once without a server (then an error
        is raised). ``failed()`` is called if ``compute`` raises."""
        doc = self.layout.document if hasattr(self, "layout") else None
        if doc is None or doc.session_context is None:
            try:
                result = compute()
            except Exception:
                if failed is not None:
                    failed()
                raise
            apply(result)
            return
        if message:
            self.say(message)

        @without_document_lock
        async def work():
            try:
                result = await asyncio.get_running_loop().run_in_executor(None, compute)
            except Exception as exc:
                doc.add_next_tick_callback(partial(self.say, f"{type(exc).__name__}: {exc}",
                                                   error=True))
                if failed is not None:
                    doc.add_next_tick_callback(failed)
                return
            doc.add_next_tick_callback(partial(self._guarded, apply, result))

        doc.add_next_tick_callback(work)

    def add_region(self, region, name=None):
        """Add a region: its trace (computed in the background when served), its outline on
        the pattern (or the map and the profile) and a row of the table."""
        self._background(partial(self.trace_of, region), partial(self._add, region, name=name),
                         f"computing the trace of {region_label(region)} ...")

    def _add(self, region, trace, name=None):
        self.count += 1
        name = name or f"R{self.count}"
        color = COLORS[(self.count - 1) % len(COLORS)]
        source = ColumnDataSource(name=f"trace-{self.count}")
        entry = {"region": region, "trace": trace, "color": color, "source": source}
        entry["renderers"] = [
            *self._outline(region, color),
            self.traces.segment(x0="delay", y0="lower", x1="delay", y1="upper", source=source,
                                line_color=color),
            self.traces.line(x="delay", y="value", source=source, line_color=color),
            self.traces.scatter(x="delay", y="value", source=source, color=color, size=6)]
        self.regions[name] = entry
        self._fill(entry)
        self._update_table()
        self.say(f"{name}: {region_label(region)}")
        return name

    @property
    def trace_var(self):
        """The quantity of the traces shown: ``change`` (ΔI/I) or ``intensity``."""
        return TRACE_VARS[self.quantity.active]

    def _fill(self, entry):
        trace = entry["trace"]
        value = trace[self.trace_var].values
        error = trace[f"{self.trace_var}_error"].values
        entry["source"].data = {"delay": trace["delay"].values, "value": value,
                                "lower": value - error, "upper": value + error,
                                "error": error}

    def _on_quantity(self, attr, old, new):
        self.traces.yaxis.axis_label = TRACE_LABELS[new]
        self._remove_fit()
        for entry in self.regions.values():
            self._fill(entry)
        self._update_table()

    def _outline(self, region, color):
        (kind, value), = region.items()
        style = {"line_color": color, "line_width": 2, "fill_alpha": 0}
        if kind == "rect":
            row0, row1, col0, col1 = value
            return [self.pattern.quad(left=col0, right=col1, top=row0, bottom=row1, **style)]
        if kind == "radii":
            r1, r2 = value
            radius = self.ds["radius"].values
            x = self.ds[self.profile_x].values
            band = BoxAnnotation(left=float(np.interp(r1, radius, x)),
                                 right=float(np.interp(r2, radius, x)), fill_color=color,
                                 fill_alpha=0.15, line_alpha=0)
            self.profile.add_layout(band)
            return [self.map.quad(left=r1 + self.radius_step / 2,
                                  right=r2 + self.radius_step / 2, top=self.ds.sizes["delay"],
                                  bottom=0, **style), band]
        (row0, col0), *radii = value
        return [self.pattern.ellipse(x=col0 + 0.5, y=row0 + 0.5, width=2 * r, height=2 * r,
                                     **style) for r in radii]

    def _update_table(self):
        names = list(self.regions)
        self.table_source.data = {
            "name": names, "color": [self.regions[n]["color"] for n in names],
            "region": [region_label(self.regions[n]["region"]) for n in names]}
        self.csv_source.data = {"text": [traces_csv(
            {n: self.regions[n]["trace"] for n in names}, self.trace_var) if names else ""]}

    def _on_rename(self):
        self._guarded(self.rename_region, self.new_name.value)

    def rename_region(self, new_name, name=None):
        """Rename a region (default: the selected one)."""
        name = name or self.selected()
        new_name = str(new_name).strip()
        if not new_name:
            raise ValueError("type the region's new name first")
        if new_name in self.regions and new_name != name:
            raise ValueError(f"a region is already named {new_name!r}")
        self.regions = {new_name if n == name else n: entry
                        for n, entry in self.regions.items()}
        self._update_table()

    def selected(self):
        """The name of the region selected in the table (the last one by default)."""
        if not self.regions:
            raise ValueError("no region: drag a box on the pattern or the radial map first")
        picked = self.table_source.selected.indices
        names = list(self.regions)
        return names[picked[0]] if picked else names[-1]

    def _on_remove(self):
        self._guarded(self.remove_region)

    def remove_region(self, name=None):
        """Remove a region (default: the selected one) and its plots."""
        name = name or self.selected()
        entry = self.regions.pop(name)
        for renderer in entry["renderers"]:
            for fig in self.figures:
                for drawn in (fig.renderers, fig.center):
                    if renderer in drawn:
                        drawn.remove(renderer)
        self.table_source.selected.indices = []
        self._update_table()
        self.say(f"removed {name}")

    # ------------------------------------------------------------------ fit and time zero

    def _on_fit(self):
        self._guarded(self.fit)

    def fit(self, name=None):
        """Fit a region's trace as shown (default: the selected one) to one exponential;
        shows the parameters and the curve."""
        name = name or self.selected()
        trace = self.regions[name]["trace"]
        result = self.ds.ued.fit(trace, var=self.trace_var)
        delay = trace["delay"].values
        t = np.linspace(delay.min(), delay.max(), 400)
        self._remove_fit()
        self.fit_renderer = self.traces.line(t, result(t), line_color="black",
                                             line_dash="dashed", line_width=2)
        rows = "".join(
            f"<tr><td>{n}</td><td>{result.values[n]:.4g}</td><td>± {result.errors[n]:.2g}"
            f"{'' if n in result.free else ' (fixed)'}</td></tr>" for n in result.names)
        what = TRACE_LABELS[self.quantity.active]
        self.fit_div.text = (f"<b>fit of {html.escape(name)}</b>, {what} (one exponential ⊗ "
                             f"Gaussian response)<table>{rows}</table>reduced χ² = "
                             f"{result.chi2:.3g}")
        self.fit_result = result
        self.t0.value = round(float(result["t0"]), 4)
        return result

    def _remove_fit(self):
        if self.fit_renderer is not None and self.fit_renderer in self.traces.renderers:
            self.traces.renderers.remove(self.fit_renderer)
        self.fit_renderer = None
        self.fit_div.text = ""

    def _on_shift(self):
        self._guarded(self.shift_time_zero, self.t0.value)

    def shift_time_zero(self, t0):
        """Move time zero to ``t0`` (ps, in the current delays): delays, the map and every
        trace follow."""
        if t0 is None:
            raise ValueError("type the new time zero (ps) first")
        self.ds = self.ds.ued.shift_time_zero(float(t0))
        self._show_dataset()
        self.say(f"time zero moved by {float(t0):g} ps")

    def _show_dataset(self):
        """Show ``self.ds`` anew (a new time zero, a new version): the map, every region's
        trace and the frame."""
        if self.has_radial:
            self._show_radial()
        for entry in self.regions.values():
            entry["trace"] = self.trace_of(entry["region"])
            self._fill(entry)
        self._update_table()
        self.limits = {}
        self.show_frame()

    # ------------------------------------------------------------------ a live store

    def follow(self, version, opener, every=2.0):
        """Follow a live store, the link that ``uedflow reduce --follow`` points at each new
        version: say which version is shown and, every ``every`` s while the run is in
        progress, show the new version if there is one (:meth:`check_version`).

        Parameters
        ----------
        version : path-like
            The version shown (the link resolved when the Dataset was opened).
        opener : callable
            ``opener(path)``: the Dataset of a version, as the viewer shows it.
        every : float, optional
            Seconds between two looks at the link (served only: without a server, call
            :meth:`check_version`).
        """
        self.version, self._opener = Path(version), opener
        self.live.update(text=live_label(self.ds, self.version), visible=True)
        doc = self.layout.document
        if doc is not None and not live_info(self.ds).get("complete"):
            self._watcher = doc.add_periodic_callback(self.check_version, round(every * 1000))

    def check_version(self):
        """Show the version the link points at now, if it is new: the same regions (their
        traces recomputed), the same delay, time zero moved as it was here. It is opened and
        the traces computed in the background when served; a version that cannot be opened
        is said in the page, and the one shown stays."""
        current = self.store.resolve()
        if self._loading or current in (self.version, self._failed):
            return
        self._loading = True
        regions = [entry["region"] for entry in self.regions.values()]
        shift = provenance(self.ds).get("time_zero", {}).get("shift")
        self._guarded(self._background, partial(self._open_version, current, regions, shift),
                      partial(self._show_version, current), None,
                      partial(self._version_failed, current))

    def _open_version(self, version, regions, shift):
        try:
            ds = self._opener(version)
        except Exception as exc:
            raise OSError(f"the new version {version.name} cannot be opened ({type(exc).__name__}"
                          f": {exc}); still showing {self.version.name}") from exc
        if (ds.sizes["y"], ds.sizes["x"]) != self.shape:
            raise ValueError(f"the frames of the new version {version.name} are "
                             f"{ds.sizes['y']} x {ds.sizes['x']} px, not {self.shape[0]} x "
                             f"{self.shape[1]}: open the page again to see it")
        if shift:   # time zero moved on the page: moved alike
            ds = ds.ued.shift_time_zero(shift)
        return ds, {_trace_key(ds, region): _trace(ds, region) for region in regions}

    def _version_failed(self, version):
        self._loading, self._failed = False, version

    def _show_version(self, version, result):
        try:
            self.ds, self.cache = result
            self.version = version
            self._take_geometry()
            self.center_marker.data_source.data = {"x": [self.center[1] + 0.5],
                                                   "y": [self.center[0] + 0.5]}
            self._readout_js.args = {**self._readout_js.args, "center": list(self.center)}
            n = self.ds.sizes["delay"]
            self.slider.update(end=max(n - 1, 1), disabled=n < 2,
                               value=min(int(self.slider.value), n - 1))
            self.lattice_source.data = {"x": [], "y": []}
            self.zones_source.data = {"xs": [], "ys": []}
            if self.show_lattice.active:
                self._on_lattice("active", False, True)
            self._remove_fit()
            self._show_dataset()
            self.live.text = live_label(self.ds, version)
            if live_info(self.ds).get("complete") and self._watcher is not None:
                self.pattern.document.remove_periodic_callback(self._watcher)
                self._watcher = None
        finally:
            self._loading = False
