"""Baseline removal kernels (wavelet and dual-tree complex wavelet), pure NumPy/PyWavelets."""
