"""Prints how fast the chart CNN's renderer draws: images per second, on the packaged 20-stock panel.

    .venv/bin/python bench/chart_render.py [n_images]

Every stock-day of ``sp500_stocks`` with a full history (166k rows, closes only) and the
S&P 500 index's bars (open, high, low, close, volume), drawn at the demo's size (32 rows)
and at JKX's (64 rows), 20 bars each. Figures, not assertions: run it on the machine you
care about.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from treum.core.plugins import create_plugin_registry
from treum.zoo.chart_cnn import Bars, ChartCNNConfig


def main(limit: int | None) -> None:
    plugins = create_plugin_registry()
    print(f"{'data':13s} {'rows x cols':>12s} {'volume':>6s} {'images':>8s} {'seconds':>8s} {'images/s':>10s}")
    for name, volume in (("sp500_stocks", False), ("sp500", True)):
        data = plugins.dataset(name).load({})
        for height in (32, 64):
            cfg = ChartCNNConfig(window=20, height=height, volume=volume)
            t0 = time.perf_counter()
            bars = Bars.of(data, cfg)
            rows = np.flatnonzero(bars.ready)
            if limit:
                rows = np.resize(rows, limit)  # repeats the rows to reach the count asked for
            images = bars.images(rows, cfg)
            seconds = time.perf_counter() - t0
            print(f"{name:13s} {f'{height} x {3 * cfg.window}':>12s} {str(volume):>6s} {len(images):8d} "
                  f"{seconds:8.2f} {len(images) / seconds:10,.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else None)
