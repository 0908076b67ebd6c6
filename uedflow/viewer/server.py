"""The viewer's bokeh server, in a thread of its own: :func:`serve`."""

import asyncio
import socket
import threading
import webbrowser
from functools import partial
from pathlib import Path

__all__ = ["ViewerServer", "serve"]

#: The address the viewer listens on unless told otherwise: this machine only.
ADDRESS = "127.0.0.1"


def _free_port(address):
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class ViewerServer:
    """A running viewer: its ``url``; :meth:`stop` ends it (also on leaving a ``with``).

    Attributes
    ----------
    url : str
        The page, ``http://ADDRESS:PORT/``.
    store : pathlib.Path
    port : int
    """

    def __init__(self, store, port, address, q_calibration=None):
        self.store, self.port, self.address = Path(store), port, address
        self.q_calibration = q_calibration
        self.url = f"http://{address}:{port}/"
        self._loop = self._server = None
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"uedflow-viewer-{port}",
                                        daemon=True)

    def _run(self):
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server
        from bokeh.settings import settings
        from tornado.ioloop import IOLoop

        from .app import build_document

        asyncio.set_event_loop(asyncio.new_event_loop())
        if settings.resources(default="server") not in ("server", "server-dev", "inline"):
            settings.resources.set_value("server")  # BokehJS from this server, never a CDN
        try:
            self._loop = IOLoop.current()
            app = Application(FunctionHandler(partial(build_document, store=self.store,
                                                      q_calibration=self.q_calibration)))
            origins = [f"{self.address}:{self.port}", f"localhost:{self.port}"]
            self._server = Server({"/": app}, io_loop=self._loop, address=self.address,
                                  port=self.port, allow_websocket_origin=origins)
            self._server.start()
        except Exception as exc:  # reported by serve(), in the caller's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.start()
        self._server.stop()
        self._loop.close(all_fds=True)

    def start(self):
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise OSError(f"the viewer cannot listen on {self.address}:{self.port}: "
                          f"{self._error}") from self._error
        return self

    def stop(self, timeout=10):
        """Stop the server and wait for its thread to end."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.add_callback(self._loop.stop)
            self._thread.join(timeout)

    def wait(self):
        """Block until the server stops (Ctrl-C: stop it)."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        state = "running" if self._thread.is_alive() else "stopped"
        return f"<uedflow viewer of '{self.store}' at {self.url} ({state})>"


def serve(store, *, port=0, address=ADDRESS, show=False, q_calibration=None):
    """Serve the viewer of a reduced store, in a background thread.

    The store is opened (lazily, with :func:`uedflow.open_reduced`) by each page that
    connects; a store that cannot be opened is reported in the page.

    Parameters
    ----------
    store : path-like
        A reduced store (``uedflow reduce``).
    port : int, optional
        The port; 0 (default): a free one.
    address : str, optional
        The address to listen on, default ``127.0.0.1`` (this machine only; from another
        machine, tunnel with ``ssh -L PORT:127.0.0.1:PORT HOST`` and the same ``PORT``).
    show : bool, optional
        Open the page in a web browser.
    q_calibration : uedflow.analysis.QCalibration, optional
        Show q: the profiles against q, and q under the cursor (default: the store's own
        calibration, if its provenance has one).

    Returns
    -------
    ViewerServer
        Running; ``.url`` is the page, ``.stop()`` ends it.

    Raises
    ------
    OSError
        If the port cannot be listened on (e.g. in use).
    ImportError
        If bokeh is not installed (``pip install "uedflow[viewer]"``).

    Examples
    --------
    >>> viewer = serve("reduced.zarr")          # doctest: +SKIP
    >>> viewer.url                              # doctest: +SKIP
    'http://127.0.0.1:40413/'
    >>> viewer.stop()                           # doctest: +SKIP
    """
    try:
        import bokeh  # noqa: F401
    except ImportError:
        raise ImportError('the viewer needs bokeh: pip install "uedflow[viewer]"') from None
    port = int(port) or _free_port(address)
    server = ViewerServer(store, port, address, q_calibration).start()
    if show:
        webbrowser.open(server.url)
    return server


def run(store, *, port=0, address=ADDRESS, show=True, q_calibration=None):
    """Serve the viewer of ``store`` until Ctrl-C: the ``uedflow view`` command.

    Prints the page's URL, and why the store cannot be shown (the page says it too).

    Raises
    ------
    FileNotFoundError
        If ``store`` does not exist.
    OSError
        If the port cannot be listened on.
    """
    from ..pipeline.store import open_reduced
    from .data import check_store

    store = Path(store)
    if not store.exists():
        raise FileNotFoundError(f"The store '{store.absolute()}' does not exist")
    try:
        check_store(open_reduced(store), store)
    except (OSError, ValueError) as exc:
        print(f"uedflow view: warning: {exc} (the page shows this)", flush=True)
    server = serve(store, port=port, address=address, show=show, q_calibration=q_calibration)
    print(f"uedflow view: {store} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("uedflow view: stopped", flush=True)
    return 0
