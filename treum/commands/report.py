"""``treum report``: the release report of every deployed model, as one HTML page and its JSON twin.

``treum report release=<tag> [fairness.<key>=<value> ...]`` builds, for each deployed model:
a model card (task, data and period, intended use, metrics beside the baselines with their
confidence intervals, limitations), its explanations and uncertainty (every explainer that
applies to its capabilities), its fairness results where its task decides things about people,
and the audit excerpt of the release (who deployed what, when, why, forced or not). The page is
written under ``$TREUM_HOME/reports/<tag>/`` and the document is kept in the registry
(``release_reports``), so ``treum report list`` shows past releases and ``treum report show <tag>``
one of them again.

Where the figures come from: conformal coverage and fairness are measured on the walk-forward's
out-of-sample rows kept inside the version's artifact (``evaluation/oos.parquet``), which no fit
of the version saw; explanations describe the deployed fit on the newest rows of its data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from treum.commands.output import console
from treum.core.errors import TreumError
from treum.registry.values import clean_json

log = logging.getLogger("treum.report")



def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the release report of every deployed model (HTML + JSON), list or "
                                      "show past ones",
                       description="treum report release=TAG [fairness.KEY=VALUE ...] | treum report list | "
                                   "treum report show TAG [--html PATH]")
    p.add_argument("words", nargs="*", help="release=TAG and config overrides; or: list; or: show TAG")
    p.add_argument("--html", help="show: write the page again to this path")
    p.add_argument("--out", help="release: the folder to write into (default: $TREUM_HOME/reports/TAG)")
    p.add_argument("--url", help="registry database URL (default: $TREUM_REGISTRY_URL or SQLite in $TREUM_HOME)")


def main(args: argparse.Namespace) -> int:
    from treum.core.plugins import create_plugin_registry
    from treum.registry.store import Registry

    words = list(args.words)
    registry = Registry(url=args.url)
    try:
        if words[:1] == ["list"]:
            return _list(registry)
        if words[:1] == ["show"]:
            if len(words) != 2:
                raise TreumError("usage: treum report show TAG [--html PATH]")
            return _show(registry, words[1], args.html)
        releases = [w for w in words if w.startswith("release=")]
        if len(releases) != 1:
            raise TreumError("name the release: treum report release=TAG (or: treum report list | show TAG)")
        tag = releases[0].split("=", 1)[1]
        overrides = [w for w in words if not w.startswith("release=")]
        plugins = create_plugin_registry()
        out = Path(args.out) if args.out else None
        write_release(registry, plugins, tag, overrides, out)
        return 0
    finally:
        registry.close()


def check_overrides(plugins: Any, overrides: list[str]) -> None:
    """Only ``fairness.<key>=<value>``, and only keys the fairness checks' configs have."""
    import dataclasses

    from treum.core.errors import did_you_mean

    known = {f.name for spec in plugins.specs("fairness_checks").values() if spec.config_cls is not None
             for f in dataclasses.fields(spec.config_cls)}
    for word in overrides:
        key = word.lstrip("+~").split("=", 1)[0]
        if "=" not in word or not key.startswith("fairness."):
            raise TreumError(f"treum report takes release=TAG and fairness.KEY=VALUE overrides, not {word!r}")
        name = key.split(".", 1)[1]
        if name not in known:
            raise TreumError(f"fairness has no key '{name}'{did_you_mean(name, known)} (keys: {', '.join(sorted(known))})")


def fairness_config(plugins: Any, name: str, overrides: list[str]) -> Any:
    """The fairness check's config: ``conf/fairness/<name>.yaml`` with ``fairness.<key>=<value>`` overrides."""
    from treum.commands.compose import compose_plain, to_dict
    from treum.core.config import build_config

    cfg = compose_plain([f"fairness={name}", *overrides], plugins)
    spec = plugins.specs("fairness_checks")[name]
    return build_config(spec.config_cls, to_dict(cfg.fairness), "fairness", f"fairness check '{name}'")


def write_release(registry: Any, plugins: Any, tag: str, overrides: list[str], out: Path | None = None,
                  actor: str | None = None) -> Path:
    """Build, render, write and record the report of every deployed model; returns the HTML's path."""
    from treum.commands.compose import login_name
    from treum.commands.report_html import render_html
    from treum.registry.releases import check_tag

    tag = check_tag(tag)
    check_overrides(plugins, overrides)
    actor = actor or login_name()
    deployed = [m for m in registry.list_models() if m.deployment_status == "deployed"]
    if not deployed:
        raise TreumError("no model is deployed, so a release has nothing to report; deploy one "
                         "(treum registry deploy NAME) and run the report again")
    existing = {r.release for r in registry.releases()}
    if tag in existing:
        raise TreumError(f"release '{tag}' already has a report; show it with `treum report show {tag}` "
                         "or choose another tag")
    fairness = {name: fairness_config(plugins, name, overrides) for name in plugins.specs("fairness_checks")}
    models = []
    frames: dict[str, Any] = {}  # versions trained on the same data, features and configs share one load
    for row in sorted(deployed, key=lambda m: (m.model_type, m.model_name)):
        console.print(f"report: {row.model_name} v{row.model_version} ({row.model_type})", markup=False)
        try:
            models.append(model_section(registry, plugins, row, fairness, frames))
        except Exception as exc:  # one model that cannot be reported must not hide the others'
            log.warning("report of %s v%s failed", row.model_name, row.model_version, exc_info=True)
            models.append(failed_section(row, exc))
    document = {
        "release": tag,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "created_by": actor,
        "treum_version": _version(),
        "registry": registry.engine.dialect.name,  # the kind only: no host, user or path in a page meant to travel
        "simulated_data": any(m["data"].get("simulated") for m in models),
        "models": models,
        "audit": audit_excerpt(registry, [m["name"] for m in models]),
        "notes": [
            "Metrics are the walk-forward's, out of sample, beside the task's baselines on the same split.",
            "Conformal coverage and fairness are measured on the walk-forward's out-of-sample rows; explanations "
            "describe the deployed fit on the newest rows of its data.",
        ],
    }
    # plain JSON, exactly as stored: NaN and infinities become null (JSONB refuses them; JSON has none)
    document = json.loads(json.dumps(clean_json(json.loads(json.dumps(document, default=_plain))), allow_nan=False))
    html = render_html(document)
    digest = hashlib.sha256(html.encode("utf-8")).hexdigest()
    # the record first: files without a record would be a release the registry does not know
    registry.record_release(tag, document, [{"name": m["name"], "version": m["version"], "id": m["id"]}
                                            for m in models], digest, actor)
    folder = out or _home() / "reports" / tag
    folder.mkdir(parents=True, exist_ok=True)
    page, twin = folder / "report.html", folder / "report.json"
    page.write_text(html, encoding="utf-8")
    twin.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False), encoding="utf-8")
    console.print(f"release {tag}: {len(models)} deployed model(s); wrote {page} and {twin}; recorded in the registry")
    return page


def model_section(registry: Any, plugins: Any, row: Any, fairness: dict[str, Any],
                  frames: dict[str, Any] | None = None) -> dict[str, Any]:
    """One deployed model's card, metrics, explanations, uncertainty and fairness.

    ``frames`` caches the loaded and featurised data by what determines it, across the models of one report.
    """
    from treum.serve.explain_target import version_frame
    from treum.serve.live import load_version, task_of

    meta = row.model_metadata or {}
    spec = plugins.model(row.model_name)
    task = task_of(plugins, row.model_type, meta)
    data_name = meta.get("data")
    data_spec = plugins.dataset(data_name) if data_name in plugins.specs("datasets") else None
    wf = (row.custom_metrics or {}).get("walk_forward") or {}
    baselines = (row.custom_metrics or {}).get("baselines") or {}
    task_spec = plugins.task(row.model_type)
    section: dict[str, Any] = {
        "name": row.model_name, "version": row.model_version, "id": str(row.id), "task": row.model_type,
        "family": row.model_architecture, "status": row.deployment_status, "description": spec.description,
        "artifact_sha256": row.artifact_sha256,
        "data": {"name": data_name, "simulated": bool(data_spec is not None and data_spec.simulated),
                 "period": meta.get("segments") or {}, "caveat": data_spec.caveat if data_spec else "",
                 "features": meta.get("features")},
        "card": {
            "intended_use": f"{task_spec.description}. A research signal to rank or weigh alongside other evidence; "
                            "not advice on its own.",
            "limitations": _limitations(row, data_spec, wf, baselines, task_spec),
            "scheme": meta.get("evaluation") or "walk-forward, out of sample",
            "primary_metric": task_spec.primary_metric, "higher_is_better": task_spec.higher_is_better,
            # a deployed version's status before it went live: validated (beat its baselines) or registered (forced)
            "validated": (meta.get("status_before_deploy") or row.deployment_status) == "validated",
        },
        "metrics": {"headline": list(task.headline()), "rows": [
            {"label": row.model_name, "kind": "model", "metrics": wf},
            *({"label": k, "kind": "baseline", "metrics": v} for k, v in baselines.items())]},
        "explanations": {}, "fairness": None, "drift": None,
    }
    model = load_version(registry, plugins, row.artifact_sha256, task)
    if callable(getattr(model, "summary", None)):  # a model that describes itself (a clustering's clusters)
        section["summary"] = model.summary()
    oos = _oos(registry, row.artifact_sha256)
    frame, why = None, "the version's data set is not installed here"
    if data_spec is not None:
        key = json.dumps([data_name, meta.get("data_config"), meta.get("features"), meta.get("features_config"),
                          row.training_data_version], sort_keys=True, default=str)
        try:
            frame = (frames or {}).get(key)
            if frame is None:
                frame = version_frame(plugins, meta, row.training_data_version)
                if frames is not None:
                    frames[key] = frame
        except TreumError as exc:
            why = str(exc)
    section["explanations"] = explanations(plugins, model, task, frame, oos, why)
    decisions = task.decisions(oos) if oos is not None else None
    if decisions is not None:
        section["fairness"] = fairness_section(plugins, fairness, decisions, frame, why)
    return section


def fairness_section(plugins: Any, fairness: dict[str, Any], decisions: pd.DataFrame, frame: pd.DataFrame | None,
                     why: str) -> dict[str, Any]:
    """Every fairness check on the version's decisions; a check that cannot run says why, the others still do.

    ``passed``: True when every judged check passed, False when one failed, None when none was judged.
    """
    out: dict[str, Any] = {"checks": [], "by_group": {}, "segments": [], "skipped": {},
                           "outcome": "recommended (the task's decision) against the outcome it is for"}
    if frame is None:
        out["skipped"] = dict.fromkeys(fairness, why)
    for name, cfg in (fairness.items() if frame is not None else ()):
        try:
            result = plugins.specs("fairness_checks")[name].check(decisions, frame, cfg)
        except Exception as exc:  # a check's failure is reported, not fatal
            log.warning("fairness check %s failed", name, exc_info=True)
            out["skipped"][name] = f"{type(exc).__name__}: {exc}"
            continue
        prefix = "" if len(fairness) == 1 else f"{name}: "
        out["checks"] += [{"fairness_check": name, **c} for c in result.get("checks", [])]
        out["by_group"].update({prefix + seg: rows for seg, rows in result.get("by_group", {}).items()})
        out["segments"] += list(getattr(cfg, "segments", []) or [])
        out["rows"] = result.get("rows")  # the decisions every check judged (the same rows for each)
    verdicts = [c.get("passed") for c in out["checks"] if c.get("passed") is not None]
    out["passed"] = None if not verdicts else all(verdicts)
    return out


def failed_section(row: Any, exc: BaseException) -> dict[str, Any]:
    """The section of a deployed model whose report could not be built: what it is, and why."""
    why = f"the report of this version could not be built ({type(exc).__name__}: {exc})"
    return {"name": row.model_name, "version": row.model_version, "id": str(row.id), "task": row.model_type,
            "family": row.model_architecture, "status": row.deployment_status, "artifact_sha256": row.artifact_sha256,
            "data": {"name": (row.model_metadata or {}).get("data"), "simulated": False}, "card": {"limitations": [why]},
            "metrics": {}, "explanations": {"skipped": {"all": why}}, "fairness": None, "drift": None, "error": why}


def explanations(plugins: Any, model: Any, task: Any, frame: pd.DataFrame | None, oos: pd.DataFrame | None,
                 why: str = "the version's data set is not installed here") -> dict:
    """Every explainer plugin that applies to the model, each on the rows it needs; the others say why not."""
    from treum.core.explain import applicable, explain
    from treum.serve.explain_target import explain_target

    specs = plugins.specs("explainers")
    out: dict[str, Any] = {"skipped": {}}
    usable = set(applicable(model.spec.capabilities, specs))
    if frame is None:
        out["skipped"] = dict.fromkeys(specs, why)
        return out
    try:  # the same target as the explanation routes build (treum.serve.explain_target)
        target = explain_target(plugins, model, task, frame, oos)
    except TreumError as exc:
        out["skipped"] = dict.fromkeys(specs, str(exc))
        return out
    for name, spec in sorted(specs.items()):
        if name not in usable:
            out["skipped"][name] = _why_not(name, model, specs)
            continue
        if name == "conformal" and target.labels is None:
            out["skipped"][name] = f"task '{task.name}' gives its output no calibrated label to cover"
            continue
        rows = target.background.iloc[-spec.report_rows:] if spec.scope == "local" else None
        try:
            out[name] = explain(name, target, rows, {}, specs)
        except TreumError as exc:
            out["skipped"][name] = str(exc)
        except Exception as exc:  # a library's failure on this model: reported, and the other explainers still run
            log.warning("explainer %s failed on %s", name, model.spec.name, exc_info=True)
            out["skipped"][name] = f"{type(exc).__name__}: {exc}"
    return out


def _why_not(name: str, model: Any, specs: dict) -> str:
    from treum.core.explain import capability_problems

    spec = specs[name]
    return "; ".join(capability_problems(spec.requires, spec.excludes, model.spec.capabilities))


def audit_excerpt(registry: Any, names: list[str]) -> list[dict[str, Any]]:
    """Who deployed what, when, why, forced or not: the deployment history of the release's models."""
    return [{"at": r.created_at.replace(tzinfo=timezone.utc).isoformat(timespec="seconds"), "actor": r.actor,
             "action": r.action, "model": r.model_name, "version": r.model_version,
             "previous_version": r.previous_version, "reason": r.reason, "forced": bool(r.forced)}
            for r in registry.deployment_history(names)]


def _oos(registry: Any, sha256: str) -> pd.DataFrame | None:
    from treum.core.model import OOS_FILE

    path = registry.artifacts.get(sha256) / OOS_FILE
    return pd.read_parquet(path) if path.is_file() else None


def _limitations(row: Any, data_spec: Any, wf: dict, baselines: dict, task_spec: Any) -> list[str]:
    out = []
    if data_spec is not None and data_spec.caveat:
        out.append(data_spec.caveat)
    key = task_spec.primary_metric
    mine = wf.get(key)
    for label, m in baselines.items():
        theirs = m.get(key)
        if mine is not None and theirs is not None:
            better = mine > theirs if task_spec.higher_is_better else mine < theirs
            if not better:
                out.append(f"it does not beat the baseline '{label}' on {key} ({mine:.4g} vs {theirs:.4g})")
    lo, hi = wf.get(f"{key}_ci_low"), wf.get(f"{key}_ci_high")
    if lo is not None and hi is not None:
        out.append(f"{key} is uncertain: its 95% interval is [{lo:.4g}, {hi:.4g}]")
    out.append("figures hold for the period tested; markets and users change, so they are not a forecast of "
               "live performance")
    return out


def _list(registry: Any) -> int:
    rows = registry.releases()
    if not rows:
        console.print("no release reports yet: treum report release=TAG")
        return 0
    for r in rows:
        fair = [m["fairness"].get("passed") for m in r.document.get("models", []) if m.get("fairness")]
        judged = [f for f in fair if f is not None]
        verdict = "" if not fair else f"  fairness: {_verdict(all(judged) if judged else None)}"
        models = ", ".join(f"{m['name']} v{m['version']}" for m in r.models)
        console.print(f"{r.release}  {r.created_at:%Y-%m-%d %H:%M}  by {r.created_by}  [{models}]{verdict}",
                      markup=False)
    return 0


def _show(registry: Any, tag: str, html_path: str | None) -> int:
    from treum.commands.report_html import render_html

    row = registry.release(tag)
    doc = row.document
    console.print(f"release {row.release}: {row.created_at:%Y-%m-%d %H:%M} by {row.created_by}; page sha256 "
                  f"{row.html_sha256[:12]}", markup=False)
    for m in doc.get("models", []):
        key = (m.get("card") or {}).get("primary_metric")
        rows = (m.get("metrics") or {}).get("rows") or [{}]
        wf = rows[0].get("metrics") or {}
        fair = m.get("fairness")
        console.print(f"  {m['name']} v{m['version']} ({m['task']}): {key} {wf.get(key)}"
                      + ("" if not fair else f"; fairness {_verdict(fair.get('passed'))}"), markup=False)
    if html_path:
        Path(html_path).write_text(render_html(doc), encoding="utf-8")
        console.print(f"wrote {html_path} (rendered again from the stored document)")
    return 0


def _verdict(passed: Any) -> str:
    return "not judged" if passed is None else ("pass" if passed else "FAIL")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return str(value)


def _home() -> Path:
    from treum.registry.store import treum_home

    return treum_home()


def _version() -> str:
    from importlib.metadata import version

    return version("treum")
