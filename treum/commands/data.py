"""``treum data list|show|validate``: the registered data sets, validated as a run would use them."""

from __future__ import annotations

import argparse

from treum.commands.output import console


def main(args: argparse.Namespace) -> int:
    from treum.commands.compose import compose_plain, to_dict
    from treum.core.data import Segments
    from treum.core.plugins import create_plugin_registry

    plugins = create_plugin_registry()
    if args.action == "list":
        for name, spec in plugins.specs("datasets").items():
            console.print(f"[bold]{name:14s}[/] {spec.description}  [dim]({spec.source}; plugin {plugins.owner('datasets', name)})[/]")
        return 0
    cfg = compose_plain([f"data={args.name}", *args.overrides], plugins)
    data_cfg = to_dict(cfg.data)
    panel = plugins.dataset(data_cfg["name"]).load(data_cfg)
    if args.action == "validate":  # the segments a run would use must fit the data
        Segments.from_config(data_cfg.get("segments") or {}).check_against(panel, f"data '{args.name}'")
    ts = panel.index.get_level_values("timestamp")
    ents = panel.index.get_level_values("entity").unique()
    console.print(
        f"{args.name}: valid; {len(panel):,} rows, {len(ents)} entit{'y' if len(ents) == 1 else 'ies'} "
        f"({', '.join(map(str, ents[:8]))}{'...' if len(ents) > 8 else ''}), {ts.min().date()} to {ts.max().date()}, "
        f"columns {list(panel.columns)}"
    )
    if args.action == "show":
        console.print(panel.head(5).to_string())
        console.print(panel.describe().T.to_string())
    return 0


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="list, show, validate data sets")
    ds = data.add_subparsers(dest="action", required=True)
    ds.add_parser("list")
    for action in ("show", "validate"):
        a = ds.add_parser(action)
        a.add_argument("name")
        a.add_argument("overrides", nargs="*", help="e.g. data.path=prices.csv")
