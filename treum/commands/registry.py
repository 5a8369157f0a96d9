"""``treum registry ...``: list, show, deploy, rollback, retire, history, verify, keys."""

from __future__ import annotations

import argparse
import json

from treum.commands.output import console
from treum.core.errors import TreumError


def _primary(plugins, m) -> str:
    """The version's primary walk-forward metric, named by its task (if that task is still registered)."""
    wf = (m.custom_metrics or {}).get("walk_forward", {})
    spec = plugins.specs("tasks").get(m.model_type)
    if spec is None:
        return "-"
    value = wf.get(spec.primary_metric)
    return f"{spec.primary_metric}={value:.4f}" if isinstance(value, float) else "-"


def main(args: argparse.Namespace) -> int:
    from rich.table import Table
    from sqlalchemy.engine import make_url

    from treum.core.plugins import create_plugin_registry
    from treum.registry.store import Registry

    reg = Registry(url=args.url)
    actor = args.actor
    try:
        if args.action == "list":
            plugins = create_plugin_registry()
            t = Table(title=f"registry {make_url(reg.url).render_as_string(hide_password=True)}")
            for c in ("name", "version", "task", "data", "status", "primary metric", "created", "id"):
                t.add_column(c)
            for m in reg.list_models(args.name, data=args.data):
                t.add_row(m.model_name, m.model_version, m.model_type, (m.model_metadata or {}).get("data", "-"),
                          m.deployment_status, _primary(plugins, m), str(m.created_at)[:19], str(m.id))
            console.print(t)
        elif args.action == "show":
            m = reg.get(args.name, args.version)
            fields = {c: getattr(m, c) for c in ("id", "model_name", "model_version", "model_type", "model_architecture",
                                                  "deployment_status", "artifact_sha256", "model_file_path",
                                                  "training_data_version", "training_duration_seconds", "created_at",
                                                  "deployment_date", "retirement_reason")}
            fields["data"] = (m.model_metadata or {}).get("data")
            fields["task_config"] = (m.model_metadata or {}).get("task_config")
            fields["model_config"] = m.model_config
            fields["metrics"] = (m.custom_metrics or {}).get("walk_forward")
            fields["baselines"] = (m.custom_metrics or {}).get("baselines")
            console.print_json(json.dumps(fields, default=str))
        elif args.action == "deploy":
            if args.force and not (args.reason or "").strip():
                raise TreumError("deploy --force needs --reason: say why a version that did not beat its baselines goes live")
            m = reg.deploy(args.name, args.version, actor, args.reason, args.force, data=args.data)
            console.print(f"deployed {m.model_name} version {m.model_version} ({m.id})"
                          + (" [yellow](forced)[/]" if args.force else ""))
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
                    f"previous={row.previous_version or '-':>4}  by {row.actor}{'  FORCED' if row.forced else ''}  "
                    f"{row.reason or ''}"
                )
        elif args.action == "verify":
            report = reg.verify_audit()
            if not report.ok:
                console.print(f"[red]audit log broken at row {report.first_broken_id}[/]: {report.reason}")
                return 1
            console.print(f"audit log intact: {report.rows} rows, every hash matches")
        elif args.action == "keys":
            token = reg.create_api_key(args.name, actor=actor)
            console.print(f"API key '{args.name}' (shown once, stored hashed):\n{token}")
    finally:
        reg.close()
    return 0


def add_parser(sub) -> None:
    reg = sub.add_parser("registry", help="list, show, deploy, rollback, retire, history, verify, keys")
    reg.add_argument("--url", default=None, help="database URL (default: $TREUM_REGISTRY_URL or SQLite in $TREUM_HOME)")
    reg.add_argument("--actor", default=None, help="who is acting, for the audit log (default: your login name)")
    rs = reg.add_subparsers(dest="action", required=True)
    rl = rs.add_parser("list")
    rl.add_argument("--name")
    rl.add_argument("--data", help="only versions trained on this data set")
    for action in ("show", "deploy"):
        a = rs.add_parser(action)
        a.add_argument("name")
        a.add_argument("--version")
        if action == "deploy":
            a.add_argument("--data", help="the newest version trained on this data set (when no --version)")
            a.add_argument("--reason")
            a.add_argument("--force", action="store_true",
                           help="deploy a version that did not beat its baselines (needs --reason; recorded as forced)")
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
