"""Run reductions: stack operations composed into a resumable raw-run → zarr pipeline."""
