"""Live reduction (issue 16): latency from a scan's last frame to the store, and the CPU time
per new scan as the run grows.

A writer process copies a synthetic run (lab layout) into an empty folder frame by frame, one
frame every ``--interval`` seconds, and logs when each scan's last frame is written. This
process runs :func:`uedflow.pipeline.live.follow` on that folder (polling every ``--every``
seconds) and, at each published version, records the wall time and this process's CPU time
(every thread). Per version it prints:

* the scans in it and those new since the version before;
* latency: from the last frame of the newest scan in it to the version published (it includes
  the wait for the next scan's first frame, which closes a scan, and the settling time of a
  file, ``min(every, 1)`` s);
* CPU per new scan: CPU time since the version before divided by the new scans; flat when
  the work of a scan does not grow with the scans before it;
* frames read so far and read again (``attrs["uedflow_live"]["reads"]``).

The last version (the run complete) is the offline reduction of all the files: its CPU time
is that of ``uedflow reduce``, for comparison.

    python benchmarks/live.py [--size 256] [--delays 12] [--scans 16] [--interval 0.05]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = """
import shutil, sys, time
from pathlib import Path
src, dst, interval, log = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for rel in ["mask.tif", *sorted(str(p.relative_to(src)) for p in src.glob("dark_image/*"))]:
    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / rel, dst / rel)
with open(log, "w") as out:
    for scan in sorted(p.name for p in src.glob("scan_*")):
        (dst / scan).mkdir()
        for frame in sorted((src / scan).glob("*.tif")):
            shutil.copy(frame, dst / scan / frame.name)
            time.sleep(interval)
        out.write(f"{int(scan[5:])} {time.time()}\\n")
        out.flush()
shutil.copy(src / "run.json", dst / "run.json")
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--delays", type=int, default=12)
    parser.add_argument("--scans", type=int, default=16)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds per frame")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between polls")
    args = parser.parse_args(argv)

    import dask

    from uedflow.datasets import make_run
    from uedflow.pipeline.live import LIVE_ATTR, follow
    from uedflow.pipeline.store import open_reduced

    dask.config.set(scheduler="synchronous")  # the CPU time of this process is the work
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        delays = [round(-1 + 0.5 * k, 3) for k in range(args.delays)]
        make_run(tmp / "staged", shape=(args.size, args.size), delays=delays,
                 n_scans=args.scans, layout="lab", n_darks=4)
        (tmp / "run").mkdir()
        log = tmp / "scans.log"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp / "staged"),
                                   str(tmp / "run"), str(args.interval), str(log)])
        rows, last = [], [time.process_time(), 0]

        def record(version):
            now, cpu = time.time(), time.process_time()
            state = json.loads(open_reduced(version).attrs[LIVE_ATTR])
            rows.append((state, now, cpu - last[0], len(state["scans"]) - last[1]))
            last[:] = [time.process_time(), len(state["scans"])]

        start = time.time()
        follow(tmp / "run", tmp / "out", {"mask": {"beam_block": False}}, every=args.every,
               on_update=record, log=lambda line: None)
        writer.wait()
        written = {int(s): float(t) for s, t in (line.split() for line in log.open())}
        print(f"live reduction: {args.size}x{args.size} frames, {args.delays} delays, "
              f"{args.scans} scans, a frame every {args.interval:g} s, polls every "
              f"{args.every:g} s; {time.time() - start:.1f} s in all")
        print(f"{'scans':>9} {'new':>4} {'latency s':>10} {'CPU s/new scan':>15} "
              f"{'frames read':>12} {'again':>6}  method")
        for state, when, cpu, new in rows:
            scans = state["scans"]
            latency = when - written[max(scans)]
            reads = state["reads"] or {"frames": "-", "again": "-"}
            print(f"{scans[0]:>3}..{scans[-1]:<4} {new:>4} {latency:>10.2f} "
                  f"{cpu / max(new, 1):>15.3f} {reads['frames']:>12} {reads['again']:>6}  "
                  f"{state['method']}")


if __name__ == "__main__":
    main()
