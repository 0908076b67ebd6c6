"""uedflow against scikit-ued on the public sample images of scikit-ued's documentation.

Prints the differences (not timings) on the files in ``../shared/data`` (or ``--data DIR``):
hot-spot removal with ``baseline_dwt`` (the tutorial's call), Bragg peaks by persistence and
Brillouin zones on simulated MoS2, centre-finding on the Ewald walk-off pattern, and the 1D
baselines of the powder profile.
"""

import argparse
from pathlib import Path

import numpy as np
import skued

import uedflow


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def hotspots(data):
    im = uedflow.diffread(data / "hotspots.tif")
    kwargs = dict(max_iter=250, level=1, wavelet="sym2", axis=(0, 1))
    ours, theirs = uedflow.baseline_dwt(im, **kwargs), skued.baseline_dwt(im, **kwargs)
    print(f"hotspots.tif  baseline_dwt: max |diff| / max = {_rel(ours, theirs):.2e}")


def mos2(data):
    im = uedflow.diffread(data / "ab_initio_monolayer_mos2.tif")
    ours = uedflow.bragg_peaks_persistence(im, prominence=0.1)
    theirs = skued.bragg_peaks_persistence(im, prominence=0.1)
    same = {tuple(p) for p in np.asarray(ours[0]).tolist()} == {
        tuple(p) for p in np.asarray(theirs[0]).tolist()}
    print(f"MoS2          bragg_peaks_persistence: {len(ours[0])} vs {len(theirs[0])} peaks, "
          f"same set: {same}, persistence max |diff| = "
          f"{np.max(np.abs(np.sort(ours[3]) - np.sort(theirs[3]))):.2e}")
    center = np.array([im.shape[0] // 2, im.shape[1] // 2])
    args = dict(mask=np.ones(im.shape), center=center.astype(int))
    bz_ours = uedflow.brillouin_zones(im, peaks=np.asarray(ours[0]).astype(int), **args)
    bz_theirs = skued.brillouin_zones(im, peaks=np.asarray(theirs[0]).astype(int), **args)
    n_ours = len(bz_ours.getVisibleBZs(symmetry=6) or [])
    n_theirs = len(bz_theirs.getVisibleBZs(symmetry=6) or [])
    print(f"MoS2          brillouin_zones: {n_ours} vs {n_theirs} visible zones")


def walkoff(data):
    im = uedflow.diffread(data / "ewald_walkoff.tif")
    mask = uedflow.diffread(data / "ewald_walkoff_mask.tif").astype(bool)
    ours, theirs = uedflow.autocenter(im, mask=mask), skued.autocenter(im, mask=mask)
    print(f"ewald_walkoff autocenter: uedflow {np.round(ours, 2)}, skued {np.round(theirs, 2)}, "
          f"distance {np.hypot(*np.subtract(ours, theirs)):.2f} px")


def powder(data):
    _, intensity = np.load(data / "powder.npy")
    for name in ("baseline_dwt", "baseline_dt"):
        ours = getattr(uedflow, name)(intensity, max_iter=100, level=6)
        theirs = getattr(skued, name)(intensity, max_iter=100, level=6)
        print(f"powder.npy    {name}: max |diff| / max = {_rel(ours, theirs):.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default)
    data = parser.parse_args().data
    for compare in (hotspots, mos2, walkoff, powder):
        compare(data)


if __name__ == "__main__":
    main()
