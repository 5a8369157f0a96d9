"""Prints how long each model takes: one fit on the S&P 500 training segment, and a full walk-forward.

    .venv/bin/python bench/walk_forward.py [model ...]

Figures, not assertions: run it on the machine you care about.
"""

from __future__ import annotations

import sys
import time

from treum import runner
from treum.configuration import compose_run
from treum.core.evaluation import rows_in, make_folds
from treum.core.plugins import create_plugin_registry

DEFAULT = {"gbm_direction": "sp500", "logit_direction": "sp500", "ts_transformer": "sp500", "garch": "sp500",
           "markov_regime": "sp500_index"}


def main(names: list[str]) -> None:
    plugins = create_plugin_registry()
    print(f"{'model':18s} {'data':12s} {'rows':>7s} {'one fit s':>10s} {'folds':>6s} {'walk-forward s':>15s}")
    for name in names or list(DEFAULT):
        data = DEFAULT.get(name, "sp500")
        cfg = compose_run([f"model={name}", f"data={data}", "eval.bootstrap=0"], plugins)
        prep = runner.prepare(cfg, plugins)
        spec = plugins.model(name)
        config = runner.model_config(plugins, name, [f"data={data}"])
        folds = make_folds(prep.frame.index.get_level_values("timestamp"), prep.segments, prep.eval_cfg, prep.purge)
        first = folds[0]
        t0 = time.perf_counter()
        spec.factory(config).fit(rows_in(prep.frame, first.train), rows_in(prep.frame, first.valid) if first.valid else None)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner.evaluate(name, spec, config, prep)
        wf = time.perf_counter() - t0
        n = len(rows_in(prep.frame, first.train))
        print(f"{name:18s} {data:12s} {n:7d} {one:10.1f} {len(folds):6d} {wf:15.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
