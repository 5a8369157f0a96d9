"""The ``treum`` command.

Run commands (train, evaluate, leaderboard) take Hydra overrides and
``--multirun``; management commands (registry, plugins, data) take flags.
Errors treum raises on purpose print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from treum.core.errors import TreumError


def _plugins():
    from treum.core.plugins import create_plugin_registry

    return create_plugin_registry()


def _print_outcome(outcome, task: str) -> None:
    from treum import runner

    runner.print_table(f"{task} leaderboard (walk-forward, out of sample)", runner.headline(outcome.table, task))
    runner.console.print(f"outputs: {outcome.run_dir}")
    runner.console.print(f"training jobs: {', '.join(outcome.job_ids)}")
    for r in outcome.registered:
        runner.console.print(
            f"registered [bold]{r['name']}[/] version {r['version']} ({r['status']}), id {r['id']}, artifact {r['sha256'][:12]}"
        )


def cmd_run(command: str, overrides: list[str]) -> int:
    from treum import runner
    from treum.configuration import compose_plain, compose_run

    plugins = _plugins()
    if command == "leaderboard":
        cfg = compose_plain(overrides, plugins)
        names = runner.models_of_task(plugins, cfg.task.name)
        if not names:
            raise TreumError(f"no enabled model has task '{cfg.task.name}' (treum plugins list)")
        register = bool(cfg.registry.get("register", True))
    else:
        cfg = compose_run(overrides, plugins)
        spec = plugins.model(cfg.model.name)
        if spec.baseline:
            raise TreumError(
                f"'{spec.name}' is a baseline: it is scored beside every model of its task but never registered; "
                f"run `treum leaderboard task={spec.task}`"
            )
        names = [cfg.model.name]
        register = command == "train" and bool(cfg.registry.get("register", True))
    outcome = runner.train_models(cfg, plugins, names, overrides, command, register)
    _print_outcome(outcome, cfg.task.name)
    return 1 if outcome.failures else 0


def cmd_registry(args: argparse.Namespace) -> int:
    from treum.core.tasks import TASK_TABLE
    from treum.registry.store import Registry
    from treum.runner import console

    reg = Registry(url=args.url)
    actor = args.actor
    if args.action == "list":
        from rich.table import Table

        t = Table(title=f"registry {reg.url}")
        for c in ("name", "version", "task", "status", "primary metric", "created", "id"):
            t.add_column(c)
        for m in reg.list_models(args.name):
            wf = (m.custom_metrics or {}).get("walk_forward", {})
            task = TASK_TABLE.get(m.model_type)
            metric = task.primary_metric if task else None
            value = wf.get(metric) if metric else None
            t.add_row(m.model_name, m.model_version, m.model_type, m.deployment_status,
                      f"{metric}={value:.4f}" if isinstance(value, float) else "-", str(m.created_at)[:19], str(m.id))
        console.print(t)
    elif args.action == "show":
        import json

        m = reg.get(args.name, args.version)
        fields = {c: getattr(m, c) for c in ("id", "model_name", "model_version", "model_type", "model_architecture",
                                              "deployment_status", "artifact_sha256", "model_file_path",
                                              "training_data_version", "training_duration_seconds", "created_at",
                                              "deployment_date", "retirement_reason")}
        fields["model_config"] = m.model_config
        fields["metrics"] = (m.custom_metrics or {}).get("walk_forward")
        fields["baselines"] = (m.custom_metrics or {}).get("baselines")
        console.print_json(json.dumps(fields, default=str))
    elif args.action == "deploy":
        m = reg.deploy(args.name, args.version, actor, args.reason, args.force)
        console.print(f"deployed {m.model_name} version {m.model_version} ({m.id})")
    elif args.action == "rollback":
        m = reg.rollback(args.name, actor, args.reason)
        console.print(f"rolled back {m.model_name} to version {m.model_version} ({m.id})")
    elif args.action == "retire":
        m = reg.retire(args.name, args.version, actor, args.reason)
        console.print(f"retired {m.model_name} version {m.model_version}")
    elif args.action == "history":
        for row in reg.history(args.name):
            console.print(
                f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.action:9s} live={row.model_version or '-':>4}  "
                f"previous={row.previous_version or '-':>4}  by {row.actor}  {row.reason or ''}"
            )
    elif args.action == "verify":
        report = reg.verify_audit()
        if report.ok:
            console.print(f"audit log intact: {report.rows} rows, every hash matches")
        else:
            console.print(f"[red]audit log broken at row {report.first_broken_id}[/]: {report.reason}")
            return 1
    elif args.action == "keys":
        token = reg.create_api_key(args.name, actor=actor)
        console.print(f"API key '{args.name}' (shown once, stored hashed):\n{token}")
    reg.close()
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.table import Table

    from treum.core.plugins import create_plugin_registry, load_plugin_settings
    from treum.runner import console

    settings = load_plugin_settings()
    plugins = create_plugin_registry(settings)
    t = Table(title=f"plugins (settings: {settings.source or 'no plugins.toml'})")
    for c in ("plugin", "distribution", "version", "on", "registers"):
        t.add_column(c)
    for info in plugins.infos:
        regs = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(info.registers.items()))
        t.add_row(info.name, info.distribution, info.version, "yes" if info.enabled else "no", regs or "-")
    console.print(t)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from treum.runner import console, to_dict

    plugins = _plugins()
    if args.action == "list":
        for name, spec in plugins.specs("datasets").items():
            console.print(f"[bold]{name:14s}[/] {spec.description}  [dim]({spec.source}; plugin {plugins.owner('datasets', name)})[/]")
        return 0
    from treum.configuration import compose_plain
    from treum.core.data import Segments

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


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from treum.configuration import compose_plain
    from treum.registry.store import treum_home
    from treum.runner import console, to_dict
    from treum.serve.settings import ServeSettings

    plugins = _plugins()
    cfg = compose_plain(args.overrides, plugins)
    settings = ServeSettings.from_config(to_dict(cfg.serve))
    url = cfg.registry.get("url")
    from treum.serve import ray_app

    if args.export:
        path = ray_app.export_config(settings, url, treum_home(), args.export)
        console.print(f"wrote {path}; deploy it on a Ray cluster with `serve deploy {path}`")
        return 0
    done = threading.Event()
    # handlers first: a Ctrl-C while Serve is still starting must stop it cleanly too, not raise mid-deploy
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    console.print("starting Ray Serve ...")
    ray_app.start(settings, url, treum_home())
    console.print(f"serving on http://{settings.host}:{settings.port}/api/v1/ml/ (Ray Serve proxy)")
    if settings.direct_ingress:
        console.print(f"direct ingress on http://{settings.host}:{settings.direct_port}/api/v1/ml/ (the router replica's own port)")
    console.print(f"OpenAPI: http://{settings.host}:{settings.port}/docs; Ctrl-C stops")
    done.wait()
    console.print("stopping: flushing logs ...")
    ray_app.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from treum import demo

    return demo.run()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="treum", description="A model zoo for financial machine learning.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("train", "walk-forward evaluate a model beside its baselines, fit it, register it"),
        ("evaluate", "walk-forward evaluate a model beside its baselines (registers nothing)"),
        ("leaderboard", "every model of a task and its baselines on the same split (task=direction data=sp500)"),
    ):
        sp = sub.add_parser(name, help=text, description=text)
        sp.add_argument("--multirun", "-m", action="store_true", help="sweep comma-separated override values")
        sp.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=garch data=nasdaq eval.refit_every=126")
    reg = sub.add_parser("registry", help="list, show, deploy, rollback, retire, history, verify, keys")
    reg.add_argument("--url", default=None, help="database URL (default: $TREUM_REGISTRY_URL or SQLite in $TREUM_HOME)")
    reg.add_argument("--actor", default=None, help="who is acting, for the audit log (default: $USER)")
    rs = reg.add_subparsers(dest="action", required=True)
    rl = rs.add_parser("list")
    rl.add_argument("--name")
    for action in ("show", "deploy"):
        a = rs.add_parser(action)
        a.add_argument("name")
        a.add_argument("--version")
        if action == "deploy":
            a.add_argument("--reason")
            a.add_argument("--force", action="store_true", help="deploy a version that did not beat its baselines")
    rb = rs.add_parser("rollback")
    rb.add_argument("name")
    rb.add_argument("--reason")
    rt = rs.add_parser("retire")
    rt.add_argument("name")
    rt.add_argument("--version", required=True)
    rt.add_argument("--reason")
    rh = rs.add_parser("history")
    rh.add_argument("name")
    rs.add_parser("verify", help="recompute the audit log's hash chain; report the first broken row")
    keys = rs.add_parser("keys", help="API keys: keys create NAME")
    keys.add_argument("verb", choices=["create"])
    keys.add_argument("name")
    pl = sub.add_parser("plugins", help="plugins list")
    pl.add_argument("verb", choices=["list"])
    data = sub.add_parser("data", help="list, show, validate data sets")
    ds = data.add_subparsers(dest="action", required=True)
    ds.add_parser("list")
    for action in ("show", "validate"):
        a = ds.add_parser(action)
        a.add_argument("name")
        a.add_argument("overrides", nargs="*", help="e.g. data.path=prices.csv")
    sv = sub.add_parser("serve", help="serve the deployed models over HTTP with Ray Serve (serve.port=8000 ...)")
    sv.add_argument("--export", metavar="FILE", help="write a Serve config file for `serve deploy` instead of serving")
    sv.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. serve.port=9000 serve.members.ts_transformer.placement=remote")
    sub.add_parser("demo", help="train and evaluate the zoo on packaged data, register, print leaderboards")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    if getattr(args, "actor", None) is None and hasattr(args, "actor"):
        args.actor = os.environ.get("USER", "cli")
    start = time.perf_counter()
    try:
        if args.command in ("train", "evaluate", "leaderboard"):
            if args.multirun:
                from treum.configuration import expand_multirun

                combos = expand_multirun(args.overrides)
                rc = 0
                for i, combo in enumerate(combos, 1):
                    print(f"\n[multirun {i}/{len(combos)}] {' '.join(combo)}", flush=True)
                    rc = max(rc, cmd_run(args.command, combo))
                return rc
            return cmd_run(args.command, args.overrides)
        if args.command == "registry":
            return cmd_registry(args)
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "data":
            return cmd_data(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "serve":
            return cmd_serve(args)
    except TreumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.command in ("train", "evaluate", "leaderboard", "demo"):
            print(f"done in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
