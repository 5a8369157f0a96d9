"""``treum registry ...``: list, show, deploy, rollback, retire, history, verify, checkpoint, prune, keys, jobs.

Every command that changes the registry writes a signed audit checkpoint after its
change, so a normal workflow keeps the checkpoints fresh. The registry URL is only
ever shown with its password masked (``Registry.display_url``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from treum.commands.output import console
from treum.core.errors import TreumError

AGE = re.compile(r"(\d+)\s*([dhw])")
UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_age(text: str, what: str = "--older-than") -> timedelta:
    """``90d``, ``12h`` or ``2w`` as a timedelta."""
    match = AGE.fullmatch(str(text).strip().lower())
    if not match or int(match.group(1)) == 0:
        raise TreumError(f"{what} takes a positive age such as 90d (days), 12h (hours) or 2w (weeks), got {text!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


def parse_expiry(text: str, now: datetime) -> datetime:
    """``--expires``: an age from now (``30d``) or a UTC date or time (``2027-01-31``: its start, 00:00 UTC)."""
    if AGE.fullmatch(str(text).strip().lower()):
        return now + parse_age(text, "--expires")
    try:
        moment = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise TreumError(f"--expires takes a date (2027-01-31), a UTC time (2027-01-31T12:00) or an age from now "
                         f"(30d, 12h, 2w), got {text!r}") from None
    return moment


def _when(moment: datetime | None, never: str = "-") -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else never


def _checkpoint(reg, actor: str) -> None:
    """After a change: sign the audit log's row count and head hash, outside the database."""
    cp = reg.checkpoint_audit(actor)
    console.print(f"[dim]audit checkpoint: {cp.rows} rows signed in {reg.checkpoint_path}[/]")


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

    from treum.core.plugins import create_plugin_registry
    from treum.registry.store import Registry

    reg = Registry(url=args.url)
    actor = args.actor
    try:
        if args.action == "list":
            plugins = create_plugin_registry()
            t = Table(title=f"registry {reg.display_url}")
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
            if (m.model_metadata or {}).get("tuning"):  # a version a search chose: which search, which trial
                fields["tuning"] = m.model_metadata["tuning"]
            console.print_json(json.dumps(fields, default=str))
        elif args.action == "deploy":
            if args.force and not (args.reason or "").strip():
                raise TreumError("deploy --force needs --reason: say why a version that did not beat its baselines goes live")
            m = reg.deploy(args.name, args.version, actor, args.reason, args.force, data=args.data)
            console.print(f"deployed {m.model_name} version {m.model_version} ({m.id})"
                          + (" [yellow](forced)[/]" if args.force else ""))
            _checkpoint(reg, actor)
        elif args.action == "rollback":
            m = reg.rollback(args.name, actor, args.reason)
            console.print(f"rolled back {m.model_name} to version {m.model_version} ({m.id})")
            _checkpoint(reg, actor)
        elif args.action == "retire":
            m = reg.retire(args.name, args.version, actor, args.reason)
            console.print(f"retired {m.model_name} version {m.model_version}")
            _checkpoint(reg, actor)
        elif args.action == "history":
            for row in reg.history(args.name):
                console.print(
                    f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.action:9s} live={row.model_version or '-':>4}  "
                    f"previous={row.previous_version or '-':>4}  by {row.actor}{'  FORCED' if row.forced else ''}  "
                    f"{row.reason or ''}"
                )
        elif args.action == "verify":
            report = reg.verify_audit(actor, extra_checkpoints=args.checkpoints or ())
            if not report.ok:
                where = f" at row {report.first_broken_id}" if report.first_broken_id is not None else ""
                console.print(f"[red]audit log of {reg.display_url} broken{where}[/]: {report.reason}")
                return 1
            console.print(f"audit log intact: {report.rows} rows, every hash matches; "
                          f"{report.checkpoints} signed checkpoints agree")
            if report.checkpoints == 0:
                console.print("[yellow]no earlier checkpoint of this registry to compare with: a removed tail or a "
                              "recomputed chain from before now would not show[/]")
            console.print(f"[dim]audit checkpoint: {report.rows} rows signed in {reg.checkpoint_path}[/]")
        elif args.action == "checkpoint":
            cp = reg.checkpoint_audit(actor)
            console.print(f"audit checkpoint: {cp.rows} rows, head {cp.head[:16]}..., signed in {reg.checkpoint_path}")
            if args.export:
                out = Path(args.export)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(reg.checkpoint_path, out)
                console.print(f"exported the checkpoints to {out}; keep that copy where the database's writers "
                              f"cannot change it, and verify with --checkpoints {out}")
        elif args.action == "prune":
            counts = reg.prune(parse_age(args.older_than), actor)
            console.print(f"pruned rows older than {counts['cutoff']} UTC: {counts['model_serving_logs']} serving "
                          f"logs, {counts['ml_predictions']} predictions (kept "
                          f"{counts['ml_predictions_kept_for_experiments']} of running experiments)")
            _checkpoint(reg, actor)
        elif args.action == "keys":
            _keys(reg, args, actor)
        elif args.action == "jobs":
            _jobs(reg, args, actor)
    finally:
        reg.close()
    return 0


def _job_summary(job) -> str:
    """A job's line: a trial's score and blocks, a search's best, a run's first metrics (keys in a fixed order:
    PostgreSQL's JSONB does not keep the order they were written in)."""
    m = job.final_metrics or {}
    if job.error_message and job.status != "completed":
        return job.error_message

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    if "objective_metric" in m:  # a trial
        name = m["objective_metric"]
        early = ", stopped early" if m.get("stopped_early") else ""
        return f"{name}={fmt(m.get(name))}, blocks {m.get('blocks_run')}/{m.get('blocks')}{early}"
    if "best_trial" in m:  # a search
        return f"best {m.get('objective')}={fmt(m.get('validation_score'))} of {m.get('trials')} trials"
    return ", ".join(f"{k}={fmt(m[k])}" for k in sorted(m)[:3])


def _jobs(reg, args: argparse.Namespace, actor: str) -> None:
    from rich.table import Table

    if args.verb == "list":
        rows = reg.jobs(args.limit, job_type=args.type, status=args.status, search=args.search)
        t = Table(title=f"training jobs of {reg.display_url} (newest first, times UTC)")
        for c in ("id", "name", "type", "status", "created", "metrics / error"):
            t.add_column(c)
        for j in rows:
            t.add_row(str(j.id), j.job_name, j.job_type, j.status, _when(j.created_at), _job_summary(j)[:80])
        console.print(t)
    elif args.verb == "show":
        from treum.registry.jobs import job_dict

        console.print_json(json.dumps(job_dict(reg.job(args.id)), default=str))
    elif args.verb == "cancel":
        job = reg.cancel_job(args.id, actor, args.reason or "")
        console.print(f"cancelled {job.job_name} ({job.id}); a search stops its trials at their next block")
        _checkpoint(reg, actor)


def _keys(reg, args: argparse.Namespace, actor: str) -> None:
    from rich.table import Table

    from treum.registry.schema import utcnow

    if args.verb == "create":
        scopes = [s for given in args.scope for s in given.split(",") if s.strip()] if args.scope else None
        expires = parse_expiry(args.expires, utcnow()) if args.expires else None
        token = reg.create_api_key(args.name, scopes, expires, actor)
        key = next(k for k in reg.list_api_keys() if k.name == args.name)
        console.print(f"API key '{key.name}' (shown once, stored hashed):\n{token}")
        console.print(f"scopes: {', '.join(key.scopes)}; expires: {_when(key.expires_at, 'never')}"
                      + (" UTC" if key.expires_at else ""))
    elif args.verb == "list":
        now = utcnow()
        t = Table(title=f"API keys of {reg.display_url} (times UTC)")
        for c in ("name", "prefix", "scopes", "created", "expires", "last used", "status"):
            t.add_column(c)
        for k in reg.list_api_keys():
            status = k.status(now)
            if status == "revoked":
                status = f"revoked {_when(k.revoked_at)}"
            t.add_row(k.name, k.prefix, ", ".join(k.scopes), _when(k.created_at), _when(k.expires_at, "never"),
                      _when(k.last_used_at, "never"), status)
        console.print(t)
        return
    elif args.verb == "revoke":
        key = reg.revoke_api_key(args.name, actor)
        console.print(f"revoked API key '{key.name}' ({key.prefix}...): it no longer works")
    elif args.verb == "rotate":
        token = reg.rotate_api_key(args.name, actor)
        console.print(f"API key '{args.name}' rotated; the old token no longer works. New token (shown once):\n{token}")
    _checkpoint(reg, actor)


def add_parser(sub) -> None:
    reg = sub.add_parser("registry", help="list, show, deploy, rollback, retire, history, verify, checkpoint, prune, "
                                          "keys, jobs")
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
    rv = rs.add_parser("verify", help="recompute the audit log's hash chain and compare it with the signed "
                                      "checkpoints; report the first problem (exit status 1)")
    rv.add_argument("--checkpoints", action="append", metavar="FILE",
                    help="an exported checkpoint file to compare too (repeatable)")
    rc = rs.add_parser("checkpoint", help="sign the audit log's row count and head hash into "
                                          "$TREUM_HOME/audit-checkpoints.jsonl")
    rc.add_argument("--export", metavar="FILE", help="then copy the checkpoint file to FILE")
    rp = rs.add_parser("prune", help="delete serving logs and logged predictions older than an age (audited)")
    rp.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 90d, 12h, 2w")
    jobs = rs.add_parser("jobs", help="training jobs: list, show, cancel (train, evaluate and tune runs, trials)")
    jv = jobs.add_subparsers(dest="verb", required=True)
    jl = jv.add_parser("list", help="the newest jobs first")
    jl.add_argument("--type", choices=("training", "evaluation", "tuning"), default=None)
    jl.add_argument("--status", choices=("queued", "running", "completed", "failed", "cancelled"), default=None)
    jl.add_argument("--search", default=None, help="the trials of this search (its job id)")
    jl.add_argument("--limit", type=int, default=50)
    js = jv.add_parser("show", help="one job as JSON")
    js.add_argument("id")
    jc = jv.add_parser("cancel", help="cancel a queued or running job (a search: its trials too)")
    jc.add_argument("id")
    jc.add_argument("--reason", default=None)
    keys = rs.add_parser("keys", help="API keys: create, list, revoke, rotate")
    kv = keys.add_subparsers(dest="verb", required=True)
    kc = kv.add_parser("create", help="create a key; its token is printed once")
    kc.add_argument("name")
    kc.add_argument("--scope", action="append", metavar="SCOPE",
                    help="predict (the default), read, experiments, train, deploy or admin (implies all); "
                         "repeatable or comma-separated")
    kc.add_argument("--expires", metavar="WHEN", help="a UTC date (2027-01-31) or an age from now (30d)")
    kv.add_parser("list", help="every key: prefix, scopes, created, expires, last used, revoked")
    kr = kv.add_parser("revoke", help="revoke a key for good")
    kr.add_argument("name")
    ko = kv.add_parser("rotate", help="a new token for a key (same scopes and expiry); the old one stops working")
    ko.add_argument("name")
