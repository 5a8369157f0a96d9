"""What the commands print and write: the console, leaderboard tables, run folders."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from treum.registry.store import treum_home

console = Console(width=None if sys.stdout.isatty() else 180, soft_wrap=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 or (v == int(v) and abs(v) >= 10) else f"{v:.4f}"
    return str(v)


def headline(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The task's headline columns as text (a metric and its 95% CI in one cell where there is one),
    then ``n`` (rows scored) and ``empty`` (test rows the model left without a prediction)."""
    out = pd.DataFrame({"model": table["model"], "kind": table["kind"]})
    for col in columns:
        if col not in table.columns:
            continue
        lo, hi = f"{col}_ci_low", f"{col}_ci_high"
        if lo in table.columns and table[lo].notna().any():
            out[f"{col} [95% CI]"] = [
                f"{fmt(v)} [{fmt(a)}, {fmt(b)}]" if np.isfinite(a) else fmt(v)
                for v, a, b in zip(table[col], table[lo], table[hi])
            ]
        else:
            out[col] = [fmt(v) for v in table[col]]
    def count(v: Any) -> str:
        return "-" if v is None or not np.isfinite(v) else f"{int(v)}"

    if "n" in table.columns:
        few = table["fewer_rows"] if "fewer_rows" in table.columns else [False] * len(table)
        out["n"] = [count(v) + (" !" if f else "") for v, f in zip(table["n"], few)]
    if "empty" in table.columns:
        out["empty"] = [count(v) for v in table["empty"]]
    out["fit s"] = [fmt(v) for v in table["fit_seconds"]]
    return out


def print_table(title: str, table: pd.DataFrame) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in table.columns:
        t.add_column(col, justify="left" if col in ("model", "kind") else "right")
    for _, row in table.iterrows():
        t.add_row(*[fmt(v) for v in row])
    console.print(t)


def print_leaderboard(title: str, table: pd.DataFrame, columns: tuple[str, ...], caveat: str = "") -> None:
    """The leaderboard, the data set's caveat, and a warning for every row scored on fewer rows than the others."""
    print_table(title, headline(table, columns))
    if caveat:
        console.print(f"[yellow]! {caveat}[/]")
    if "n" not in table.columns or table.empty:
        return
    most = table["n"].max()
    for _, row in table[table["n"] < most].iterrows():
        console.print(
            f"[yellow]! {row['model']} is scored on {fmt(row['n'])} rows, the others on up to {fmt(most)}"
            + (f"; it left {fmt(row['empty'])} test rows without a prediction" if row.get("empty") else "")
            + " (not comparable on those rows: the model may need history and not declare 'sequential', "
              "its data may not cover the test, or the task could not score some of its answers)[/]"
        )


def new_run_dir(command: str, label: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = treum_home() / "runs" / f"{stamp}-{command}-{label}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_table(table: pd.DataFrame, run_dir: Path, stem: str, caveat: str = "") -> None:
    table.to_csv(run_dir / f"{stem}.csv", index=False)
    (run_dir / f"{stem}.md").write_text(_markdown(table) + (f"\n{caveat}\n" if caveat else ""))


def _markdown(table: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def print_run(outcome: Any) -> None:
    """A run's leaderboard, where its outputs went, its jobs and what it registered."""
    task = outcome.task
    if task is not None and not outcome.table.empty:
        print_leaderboard(f"{task.name} leaderboard ({getattr(outcome, 'scheme', None) or task.scheme()})", outcome.table, task.headline(),
                          outcome.caveat)
    console.print(f"outputs: {outcome.run_dir}")
    console.print(f"training jobs: {', '.join(outcome.job_ids)}")
    for r in outcome.registered:
        console.print(
            f"registered [bold]{r['name']}[/] version {r['version']} ({r['status']}), id {r['id']}, "
            f"artifact {r['sha256'][:12]}"
        )
