"""Prints how long each model takes: one fit on the S&P 500 training segment, and a full walk-forward.

    .venv/bin/python bench/walk_forward.py [model ...]

Figures, not assertions: run it on the machine you care about.
"""

from __future__ import annotations

import sys
import time

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config
from treum.core.evaluation import fit_rows, make_folds
from treum.core.model import build_model
from treum.core.plugins import create_plugin_registry


def main(names: list[str]) -> None:
    plugins = create_plugin_registry()
    print(f"{'model':18s} {'data':12s} {'rows':>7s} {'one fit s':>10s} {'folds':>6s} {'walk-forward s':>15s}")
    every = [n for n, s in plugins.specs("models").items() if not s.baseline]
    for name in names or every:
        spec = plugins.model(name)
        data = plugins.task(spec.task).data or "sp500"  # each task's demo data set
        cfg = compose_run([f"model={name}", f"data={data}", "eval.bootstrap=0"], plugins)
        prep = stages.prepare(cfg, plugins)
        config = model_config(plugins, name, [f"data={data}"])
        folds = make_folds(prep.frame.index.get_level_values("timestamp"), prep.segments, prep.eval_cfg, prep.purge)
        train, valid = fit_rows(prep.frame, folds[0], prep.labels_as_of)
        t0 = time.perf_counter()
        build_model(spec, config, prep.task).fit(train, valid)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        stages.evaluate(name, spec, config, prep)
        wf = time.perf_counter() - t0
        n = len(train)
        print(f"{name:18s} {data:12s} {n:7d} {one:10.1f} {len(folds):6d} {wf:15.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
