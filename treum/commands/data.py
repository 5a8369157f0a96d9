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
    spec = plugins.dataset(data_cfg["name"])
    if spec.kind == "corpus":
        return _show_corpus(args, spec, data_cfg)
    panel = spec.load(data_cfg)
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


def _show_corpus(args: argparse.Namespace, spec, data_cfg: dict) -> int:
    """Labelled text: its size, class mix and text lengths (a corpus has no dates or segments)."""
    corpus = spec.load(data_cfg)
    mix = corpus["label"].value_counts()
    words = corpus["text"].str.split().str.len()
    console.print(f"{args.name}: valid; {len(corpus):,} texts, classes "
                  + ", ".join(f"{k} {v:,} ({v / len(corpus):.1%})" for k, v in mix.items())
                  + f"; words per text: median {int(words.median())}, max {int(words.max())}")
    if spec.caveat:
        console.print(f"[yellow]caveat:[/] {spec.caveat}")
    if args.action == "show":
        console.print(corpus[["text", "label"]].head(5).to_string())
    return 0


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="list, show, validate data sets")
    ds = data.add_subparsers(dest="action", required=True)
    ds.add_parser("list")
    for action in ("show", "validate"):
        a = ds.add_parser(action)
        a.add_argument("name")
        a.add_argument("overrides", nargs="*", help="e.g. data.path=prices.csv")
