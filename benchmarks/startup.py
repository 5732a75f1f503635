"""Fixed cost of a ``patchlesion`` process (issue 13, item 4): median wall time over N runs of

- ``python -c pass``: the interpreter alone, for reference;
- ``patchlesion --help``: start-up, the CLI's imports and the parser;
- ``patchlesion train`` and ``patchlesion evaluate`` on an index file that does not exist: start-up,
  the imports of the training (evaluation) path, argument parsing and the run name's checks, up to
  the first file read, which fails with exit status 2. What each Snakemake job pays before it does
  any work.

    python benchmarks/startup.py                      # the package on sys.path (PYTHONPATH)
    python benchmarks/startup.py --src /other/checkout/src --runs 20

Each command runs as ``python -m patchlesion.cli`` (the same program as the ``patchlesion`` script),
the commands interleaved round by round so that all see the same machine load. Printed: the machine
(CPU model, cores, load average before and after) and one line per command.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = "tiny-ordered-nc9-mean-loss_weighting-k1-att_end"


def commands(scratch: Path) -> dict[str, list[str]]:
    """The measured command lines, by label."""
    cli = [sys.executable, "-m", "patchlesion.cli"]
    missing = ["--index", str(scratch / "missing.csv"), "--split", str(scratch / "missing.csv"), "--fold", "1", "--run", RUN]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "patchlesion --help": [*cli, "--help"],
        "patchlesion train (exits at its first file)": [*cli, "-q", "train", *missing, "--out-dir", str(scratch / "run")],
        "patchlesion evaluate (exits at its first file)": [*cli, "-q", "evaluate", *missing, "--model", str(scratch / "m.pt"),
                                                           "--predictions", str(scratch / "p.csv"), "--metrics", str(scratch / "m.json")],
    }  # fmt: skip


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default: 10)")
    parser.add_argument("--src", help="put this source folder first on PYTHONPATH (e.g. another checkout's src)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(args.src).resolve()), env.get("PYTHONPATH")) if p)
    where = subprocess.run([sys.executable, "-c", "import patchlesion; print(patchlesion.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        lines = commands(Path(scratch))
        for _ in range(args.runs):
            for label, line in lines.items():
                started = time.perf_counter()
                done = subprocess.run(line, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                times.setdefault(label, []).append(time.perf_counter() - started)
                if done.returncode not in (0, 2) or "Traceback" in done.stderr:
                    sys.exit(f"{label}: unexpected exit {done.returncode}:\n{done.stderr}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; package {where}")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    for label, seconds in times.items():
        print(f"{label:48s} median {statistics.median(seconds):6.2f} s  (min {min(seconds):.2f}, max {max(seconds):.2f}, {len(seconds)} runs)")


if __name__ == "__main__":
    main()
