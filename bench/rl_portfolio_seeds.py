"""rl_portfolio over seeds: the walk-forward of experiment=portfolio_stocks (2005-2022, refit yearly) per seed
and algorithm, beside 1/N, with the mean and standard deviation across seeds and the CPU seconds per fold.

    .venv/bin/python bench/rl_portfolio_seeds.py                                  # ppo and sac, seeds 0 1 2
    .venv/bin/python bench/rl_portfolio_seeds.py --algorithms ppo --seeds 0 1 2 3 4
    .venv/bin/python bench/rl_portfolio_seeds.py experiment=portfolio_rl_full --algorithms ppo   # full budget
    .venv/bin/python bench/rl_portfolio_seeds.py model.total_timesteps=20000 model.penalty=variance

Other arguments are Hydra overrides of the run (``model.*`` ones apply to rl_portfolio). The 20 stocks
are today's survivors: every figure here, the baselines' included, is biased upward.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config
from treum.core.plugins import create_plugin_registry

COLUMNS = ["sharpe", "sharpe_diff", "sharpe_diff_pvalue", "cagr", "volatility", "max_drawdown", "turnover",
           "cpu_s_per_fold"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["ppo", "sac"], choices=["ppo", "sac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.total_timesteps=20000")
    args = parser.parse_args()
    plugins = create_plugin_registry()
    base = ["experiment=portfolio_stocks", *[o for o in args.overrides if not o.startswith("experiment=")]]
    if any(o.startswith("experiment=") for o in args.overrides):  # the full budget's experiment replaces it
        base = [o for o in args.overrides if o.startswith("experiment=")] + base[1:]
    prep = stages.prepare(compose_run(["model=rl_portfolio", *base], plugins), plugins)
    baselines = stages.evaluate_baselines(prep, plugins, base, None)
    rows = []
    for algorithm in args.algorithms:
        for seed in args.seeds:
            overrides = ["model=rl_portfolio", *base, f"seed={seed}", f"model.algorithm={algorithm}"]
            config = model_config(plugins, "rl_portfolio", overrides, own=True)
            started = time.process_time()
            result = stages.evaluate(f"rl_portfolio[{algorithm}, seed {seed}]", plugins.model("rl_portfolio"),
                                     config, prep)
            cpu = time.process_time() - started
            table = stages.leaderboard_frame(prep, {"rl": result}, baselines, "equal_weight")
            row = table[table["model"] == "rl"].iloc[0]
            rows.append({"algorithm": algorithm, "seed": seed, **{c: row.get(c) for c in COLUMNS[:-1]},
                         "cpu_s_per_fold": cpu / len(result.folds)})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1,
                                                    float_format=lambda v: f"{v:.3f}"), flush=True)
    runs = pd.DataFrame(rows)
    summary = runs.groupby("algorithm")[COLUMNS].agg(["mean", "std"])
    ref = stages.leaderboard_frame(prep, {}, baselines, "equal_weight").set_index("model")
    pd.set_option("display.width", 250)
    print("\nper seed\n" + runs.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nmean and standard deviation across seeds " + str(args.seeds))
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nbaselines, same split\n" + ref[["sharpe", "cagr", "volatility", "max_drawdown", "turnover"]]
          .to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nsurvivor bias: the 20 stocks are today's survivors, so every figure above is biased upward")


if __name__ == "__main__":
    main()
