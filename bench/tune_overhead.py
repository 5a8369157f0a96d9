"""Prints what Ray Tune costs on this machine, and what ASHA saves on a real search.

    .venv/bin/python bench/tune_overhead.py [--trials 100] [--model gbm_direction] [--samples 8] [--skip-real]

1. Overhead: ``--trials`` trials of one second of dummy work each (one report), as many at
   once as there are CPUs; the wall time against the ideal (trials x 1 s / CPUs). Ray's own
   figure for its overhead is +14% for 10,000 one-second trials on 16 cores.
2. ASHA against full budget: the same ``treum tune`` search (``--samples`` trials of
   ``--model``, the same Optuna seed), once with ASHA and once with FIFO (every trial runs
   every validation block): the search's time, the trials ASHA stopped, the best validation
   score, and the best configuration's figure on the test segment beside the untuned YAML's
   (``treum evaluate model=...`` on the same split) and the baselines'.

Figures, not assertions: run it on the machine you care about.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def overhead(trials: int) -> None:
    import logging

    import ray
    from ray import tune

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    cpus = int(ray.cluster_resources()["CPU"])

    def one_second(config):
        time.sleep(1.0)
        tune.report({"score": config["x"]})

    ideal = trials * 1.0 / cpus
    for reuse in (False, True):  # a fresh worker process per trial (Tune's default), or one per slot (treum tune's)
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(tune.with_resources(one_second, {"cpu": 1}), param_space={"x": tune.uniform(0, 1)},
                               tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="max",
                                                           reuse_actors=reuse),
                               run_config=tune.RunConfig(storage_path=tmp, name="overhead", verbose=0))
            started = time.perf_counter()
            tuner.fit()
            wall = time.perf_counter() - started
        print(f"overhead, reuse_actors={reuse}: {trials} one-second trials on {cpus} CPUs: {wall:.1f} s against an "
              f"ideal {ideal:.1f} s (+{100 * (wall / ideal - 1):.0f}%; Ray's own figure: +14% for 10,000 trials on "
              "16 cores)")
    ray.shutdown()


def search(model: str, samples: int, scheduler: str, home: Path) -> dict:
    env = {**os.environ, "TREUM_HOME": str(home), "COLUMNS": "200"}
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "treum.cli", "tune", f"model={model}", f"hpo.num_samples={samples}",
                        f"hpo.scheduler.name={scheduler}", "eval.bootstrap=0"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if r.returncode != 0:
        raise SystemExit(f"treum tune ({scheduler}) failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    from treum.registry.store import Registry

    reg = Registry(home=home)
    model_row = reg.list_models(model)[0]
    tuning = model_row.model_metadata["tuning"]
    metric = tuning["objective"]
    out = {"wall": wall, "search_seconds": tuning["search_seconds"], "stopped": tuning["trials_stopped_early"],
           "trials": tuning["trials"], "valid": tuning["validation_score"], "untuned_valid": tuning["untuned_validation_score"],
           "test": model_row.custom_metrics["walk_forward"][metric], "metric": metric, "params": tuning["best_params"],
           "baselines": {k: v.get(metric) for k, v in (model_row.custom_metrics.get("baselines") or {}).items()}}
    reg.close()
    return out


def evaluate(model: str, home: Path, metric: str) -> float:
    """The untuned model's test-segment figure (its YAML), from the run's leaderboard."""
    import pandas as pd

    env = {**os.environ, "TREUM_HOME": str(home), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "treum.cli", "evaluate", f"model={model}", "eval.bootstrap=0"],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"treum evaluate failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    run_dir = Path(r.stdout.split("outputs: ")[1].split()[0])
    table = pd.read_csv(run_dir / "leaderboard.csv")
    return float(table.loc[table["model"] == model, metric].iloc[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--model", default="gbm_direction")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    args = p.parse_args()
    if not args.skip_overhead:
        overhead(args.trials)
    if args.skip_real:
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scheduler in ("asha", "fifo"):
            rows[scheduler] = search(args.model, args.samples, scheduler, Path(tmp) / scheduler)
        untuned = evaluate(args.model, Path(tmp) / "untuned", rows["asha"]["metric"])
    m = rows["asha"]["metric"]
    print(f"\n{args.model}, {args.samples} trials, Optuna (same seed), validation blocks before the test segment:")
    print(f"{'scheduler':10s} {'search s':>9s} {'stopped':>8s} {'best valid ' + m:>16s} {'untuned valid':>14s} "
          f"{'test ' + m + ' (best)':>16s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['search_seconds']:9.1f} {r['stopped']:>8d} {r['valid']:16.4f} {r['untuned_valid']:14.4f} "
              f"{r['test']:16.4f}")
    print(f"untuned (the YAML), treum evaluate on the same test segment: {m} {untuned:.4f}")
    base = ", ".join(f"{k} {v:.4f}" for k, v in rows["asha"]["baselines"].items() if v is not None)
    print(f"baselines on the test segment ({m}): {base}")
    print(f"best values, asha: {rows['asha']['params']}\nbest values, fifo: {rows['fifo']['params']}")


if __name__ == "__main__":
    main()
