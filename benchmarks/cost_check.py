"""The cost plan against reality (docs/performance.md §8): the demo's planned training, evaluation and
official-test time against what the `benchmark:` files of a demo run on the same machine recorded.

    python benchmarks/cost_check.py results/synthetic                 # plans the demo, then compares
    python benchmarks/cost_check.py results/synthetic --plan results/synthetic/cost.csv
    python benchmarks/cost_check.py results/synthetic --plan results/synthetic/cost.csv --tables II   # a partial run

RESULTS is the demo's dataset folder (`results/synthetic` after `snakemake --config preset=demo`),
whose `benchmarks/{train,evaluate,official_test}/` hold each job's wall seconds (column `s`).
Without `--plan`, the script runs `snakemake cost --config preset=demo` in a temporary folder (it
synthesizes and splits the demo's data, which are the same as any demo run's, and trains nothing).
It prints the planned and the recorded seconds per job kind and in all, their ratio, the largest
ratios of single runs, and the load average, because a busy machine inflates the one measurement
or the other; the last line is ``cost check: planned <P> s, recorded <R> s, ratio <P/R>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: How far the plan may be off the recorded time (issue 13: +-30 %).
TOLERANCE = 0.30


def recorded_seconds(benchmarks: Path, kind: str, run: str, folds: str) -> float:
    """Wall seconds the `benchmark:` files of one row of cost.csv recorded, summed over its jobs."""
    if kind == "train":  # one job per fold
        paths = [benchmarks / kind / run / f"fold{fold}.tsv" for fold in folds.split()]
    else:  # one job per run, every fold
        paths = [benchmarks / kind / f"{run}.tsv"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} is missing: give the results folder of a complete demo run.")
    return float(sum(pd.read_csv(path, sep="\t")["s"].iloc[-1] for path in paths))


def plan_demo(scratch: Path) -> Path:
    """cost.csv of `snakemake cost --config preset=demo`, run in ``scratch``."""
    command = [sys.executable, "-m", "snakemake", "cost", "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "config.yaml"),
               "--directory", str(scratch), "--cores", "1", "--config", "preset=demo"]  # fmt: skip
    print("planning:", " ".join(command[2:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: snakemake cost failed:\n{result.stderr[-3000:]}")
    print("\n".join(line for line in result.stdout.splitlines() if line.strip()), flush=True)
    return scratch / "results" / "synthetic" / "cost.csv"


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the demo's dataset results folder, e.g. results/synthetic")
    parser.add_argument("--plan", type=Path, default=None, help="cost.csv of the demo (default: plan it now)")
    parser.add_argument("--tables", nargs="+", default=None, help="compare only these tables' jobs (a partial demo run)")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="patchlesion-cost-check-") as scratch:
        plan = pd.read_csv(args.plan or plan_demo(Path(scratch)), dtype={"folds": str, "table": str})
    if args.tables:
        plan = plan[plan["table"].isin(args.tables)]
    print(f"load average after planning: {os.getloadavg()[0]:.2f}")
    plan["recorded"] = [recorded_seconds(args.results / "benchmarks", r.kind, r.run, r.folds) for r in plan.itertuples()]
    plan["ratio"] = plan["seconds"] / plan["recorded"]
    print(f"{'job kind':15s} {'jobs':>5s} {'planned s':>10s} {'recorded s':>11s} {'ratio':>6s}")
    for kind, part in [*plan.groupby("kind", sort=False), ("all", plan)]:
        print(f"{kind:15s} {part['jobs'].sum():5d} {part['seconds'].sum():10.1f} {part['recorded'].sum():11.1f} "
              f"{part['seconds'].sum() / part['recorded'].sum():6.2f}")  # fmt: skip
    worst = plan.iloc[(plan["ratio"] - 1).abs().argsort()[::-1][:3]]
    for r in worst.itertuples():
        print(f"  farthest: {r.kind} {r.run} folds {r.folds}: planned {r.seconds:.1f} s, recorded {r.recorded:.1f} s ({r.ratio:.2f})")
    ratio = plan["seconds"].sum() / plan["recorded"].sum()
    verdict = "within" if abs(ratio - 1) <= TOLERANCE else "outside"
    print(f"{verdict} +-{TOLERANCE:.0%} of the recorded time")
    print(f"cost check: planned {plan['seconds'].sum():.0f} s, recorded {plan['recorded'].sum():.0f} s, ratio {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
