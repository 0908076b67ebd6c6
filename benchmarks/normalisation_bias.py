"""Ring ΔI/I error of each normalisation mode, on runs with a known answer.

Runs from ``tests/physics_runs.py`` like the issue's (512² lab layout, a few electrons per pixel
in the outer rings, dark offset 12 ADU with read noise, 4 scans x 12 delays, rings losing 4 to
24 % by a Debye-Waller factor, diffuse background rising by 3 %, so the total intensity changes
with delay; per-frame beam-current jitter of 3 %; a pump-off frame per scan) are reduced with
``[normalize] mode`` = "delay" (the default), "run", "none", and with ``[dynamics] reference =
"pump_off"`` (mode "delay"). Each ring window's ΔI/I (the stored ``radial_change`` weighted over
the window) is compared with the noise-free model's at the nominal beam current.

Two kinds of jitter: "centred", the jitter of each delay's frames averaging to the nominal
current (what normalisation can remove), and "iid", independent per frame (the mean current of
a delay then differs from the nominal by jitter / sqrt(scans), which no normalisation that
keeps real changes between delays can tell from a change of the pattern).

Printed: one markdown table, bias (mean error) and RMS error in percentage points, over
``--seeds`` runs, every delay and ring, with the shot/read-noise floor of the RMS.

Usage: ``python benchmarks/normalisation_bias.py [--seeds 3] [--size 512]``
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import uedflow
from uedflow.pipeline.reduce import reduce

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from physics_runs import RunSpec, make_physics_run, ring_values

DELAYS = (-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
#: Delays before time zero here are those below 0 (t0 = 0): ``0.0`` is after.
SETUPS = {
    'mode "delay" (default)': ({"normalize": {"mode": "delay"}}, "before_t0"),
    'mode "run"': ({"normalize": {"mode": "run"}}, "before_t0"),
    'mode "none"': ({"normalize": {"mode": "none"}}, "before_t0"),
    'reference "pump_off"': ({"dynamics": {"reference": "pump_off"}}, "pump_off"),
}


def errors(truth, ds, reference):
    """Error (pp) of each ring window's ΔI/I ``(delay, ring)`` against the nominal truth."""
    estimate = ring_values(ds["radial_change"].values, ds["radius"].values,
                           truth.ring_weights(reference))
    expected = truth.ring_change(reference, nominal=True)
    return 100 * (estimate - expected)


def measure(seeds, size, folder):
    """``{(jitter kind, setup): (errors, noise floors)}`` over the runs of ``seeds``."""
    results = {}
    for centred in (True, False):
        kind = "centred" if centred else "iid"
        for seed in seeds:
            spec = RunSpec(size=size, delays=DELAYS, n_scans=4, outer_counts=3.0,
                           dark_offset=12.0, jitter=0.03, centred_current=centred,
                           bad_frame=None, write_mask=True, seed=seed)
            truth = make_physics_run(Path(folder) / f"{kind}_{seed}", spec)
            run = uedflow.open_run(truth.path)
            for name, (config, reference) in SETUPS.items():
                start = time.perf_counter()
                ds = reduce(run, config).compute()
                err = errors(truth, ds, reference)
                noise = 100 * truth.expected_ring_noise(reference)
                entry = results.setdefault((kind, name), ([], []))
                entry[0].append(err)
                entry[1].append(noise)
                print(f"# {kind:7s} seed {seed} {name:24s} RMS {np.sqrt(np.mean(err**2)):5.2f} pp"
                      f" ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    return results


def table(results, seeds, size):
    """The markdown table of the results."""
    lines = [f"Ring ΔI/I error against the noise-free model, {size}² runs of 4 scans x "
             f"{len(DELAYS)} delays, {len(seeds)} seeds x 12 delays x 4 rings "
             "(bias = mean error; pp = percentage points; signal 0 to -12 pp):", "",
             "| setup | jitter | bias (pp) | RMS error (pp) | max error (pp) "
             "| noise floor, RMS (pp) |",
             "|---|---|---|---|---|---|"]
    for (kind, name), (errs, noises) in results.items():
        e, n = np.array(errs), np.array(noises)
        lines.append(f"| {name} | {kind} | {e.mean():+.2f} | {np.sqrt(np.mean(e**2)):.2f} | "
                     f"{np.abs(e).max():.2f} | {np.sqrt(np.mean(n**2)):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory(prefix="normalisation_bias_") as folder:
        results = measure(seeds, args.size, folder)
    print(table(results, seeds, args.size))


if __name__ == "__main__":
    main()
