"""``treum demo``: the zoo end to end on packaged data.

For each evaluated task it runs the leaderboard (every model beside its
baselines, walk-forward, out of sample), registers every model, deploys the
best one that beat all its baselines (none, if none did: the demo says so
rather than deploy a loser), and prints the registry and the audit check.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from treum.commands import run as stages
from treum.commands.compose import compose_leaderboard, compose_plain, to_dict
from treum.commands.output import console, print_leaderboard
from treum.core.plugins import create_plugin_registry
from treum.registry.store import Registry
from treum.serve.settings import ServeSettings


def demo_runs(plugins) -> list[tuple[str, str, list[str]]]:
    """(task, data set, extra overrides) for every registered task that names its demo data and has a model.

    A task whose data set is not on this machine (a research file the user supplies) is skipped,
    and the demo says why and where to put the file.
    """
    runs = []
    for name, spec in plugins.specs("tasks").items():
        if not spec.data or not stages.models_of_task(plugins, name):
            continue
        data = plugins.dataset(spec.data)
        why = data.missing(to_dict(compose_plain([f"data={spec.data}"], plugins).data)) if data.missing else None
        if why:
            console.print(f"[yellow]{name}: skipped, {why}[/]")
            continue
        runs.append((name, spec.data, list(spec.demo)))
    return runs


def run() -> int:
    plugins = create_plugin_registry()
    deployed = []
    for task, data, extra in demo_runs(plugins):
        overrides = [f"task={task}", f"data={data}", *extra]
        cfg = compose_leaderboard(overrides, plugins)
        names = stages.models_of_task(plugins, task, demo=True)  # `treum leaderboard` runs every one
        n_base = len(plugins.task(task).baselines)
        console.rule(f"[bold]{task}[/] on {data}: {', '.join(names)} beside {n_base} baselines")
        costly = [n for n in stages.models_of_task(plugins, task) if n not in names and plugins.model(n).ablation_of is None]
        if costly:
            console.print(f"left out of the demo (too slow on two CPU cores; `treum leaderboard task={task}` runs them): "
                          + ", ".join(costly))
        outcome = stages.run_models(cfg, plugins, names, overrides, "leaderboard", register=True)
        print_leaderboard(f"{task} leaderboard on {data} ({outcome.task.scheme()})", outcome.table,
                          outcome.task.headline(), outcome.caveat)
        console.print(f"outputs: {outcome.run_dir}")
        validated = [r for r in outcome.registered if r["status"] == "validated"]
        order = list(outcome.table["model"])
        validated.sort(key=lambda r: order.index(r["name"]))
        registry = Registry(url=cfg.registry.get("url"))
        if validated:
            best = validated[0]
            registry.deploy(best["name"], best["version"], actor="demo", reason=f"best validated {task} model on {data}")
            deployed.append(f"{best['name']} v{best['version']}")
            console.print(f"deployed [bold]{best['name']}[/] version {best['version']}: it beat every baseline")
        else:
            console.print(f"[yellow]no {task} model beat all its baselines out of sample; nothing deployed[/]")
        registry.close()
    registry = Registry()
    settings = ServeSettings.from_config(to_dict(compose_plain([], plugins).serve))
    _deploy_for_serving(registry, settings, plugins.specs("tasks"), plugins.specs("serve_routes"))
    console.rule("[bold]registry")
    for m in registry.list_models():
        console.print(f"{m.model_name:16s} v{m.model_version:3s} {m.model_type:11s} {m.deployment_status:10s} {m.id}")
    report = registry.verify_audit()
    console.print(f"audit log: {report.rows} rows, chain {'intact' if report.ok else 'BROKEN at row ' + str(report.first_broken_id)}")
    console.print(f"registry: {registry.display_url}")
    console.print(f"deployed: {', '.join(deployed) or 'nothing'}")
    registry.close()
    status = serve_once(settings)
    _release_report(plugins)
    return status


def _release_report(plugins: Any) -> Path:
    """The demo ends as a release does: the report of every deployed model (treum report release=...)."""
    from datetime import datetime

    from treum.commands.report import write_release

    console.rule("[bold]release report")
    registry = Registry()
    try:
        return write_release(registry, plugins, f"demo-{datetime.now():%Y%m%d-%H%M%S}", [], actor="demo")
    finally:
        registry.close()


def serving_needs(registry: Registry, settings: ServeSettings, tasks: Mapping[str, Any],
                  routes: Mapping[str, Any] | None = None) -> list[str]:
    """The model names the serving demo needs live: the model of each plugin route's task (``ServeRouteSpec.task``),
    the regime model, each alias's model, the ensemble's members.

    A task's model is the one the serve config names, else its deployed (validated) model, else the
    registered one with the best walk-forward score on the task's primary metric (never a second model
    beside a deployed one: the task's route would not know which to answer with).
    """
    def score(m, task: str) -> float:
        spec = tasks.get(task)
        value = ((m.custom_metrics or {}).get("walk_forward") or {}).get(spec.primary_metric) if spec else None
        if value is None:
            return float("-inf")
        return float(value) if spec.higher_is_better else -float(value)

    def of_task(task: str) -> str | None:
        chosen = settings.model_for(task)
        if chosen:
            return chosen
        rows = [m for m in registry.list_models() if m.model_type == task and m.deployment_status != "retired"]
        deployed = [m for m in rows if m.deployment_status == "deployed"]
        if deployed:
            return deployed[0].model_name
        return max(rows, key=lambda m: (score(m, task), m.created_at)).model_name if rows else None

    needed = []
    for route in (routes or {}).values():  # a plugin route that needs a task's model, to show it answering
        if route.task is not None and route.example is not None:
            needed.append(of_task(route.task))
    if settings.regime is not None:
        needed.append(settings.regime.model or of_task(settings.regime.task))
    needed += [of_task(alias.task) for alias in settings.aliases.values()]
    if settings.ensemble is not None:
        needed += list(settings.ensemble.members)
    return [n for n in dict.fromkeys(needed) if n]


def _deploy_for_serving(registry: Registry, settings: ServeSettings, tasks: Mapping[str, Any],
                        routes: Mapping[str, Any] | None = None) -> None:
    """The combined signal needs its regime model and members live. Where none beat its baselines,
    the demo deploys the newest version anyway, with --force and a reason in the audit log, and says so."""
    for name in serving_needs(registry, settings, tasks, routes):
        if registry.live(name) is not None:
            continue
        newest = registry.get(name)
        registry.deploy(name, newest.model_version, actor="demo", force=True,
                        reason="demo of the serving path; did not beat its baselines out of sample")
        console.print(
            f"[yellow]deployed {name} v{newest.model_version} for the serving demo although it did not beat its "
            "baselines (forced; the audit log says why)[/]"
        )


def _gist(value: Any, depth: int = 0) -> Any:
    """A short view of an answer: numbers rounded, nested mappings and lists cut to their first items."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        if depth > 2:
            return f"{{{len(value)} fields}}"
        items = list(value.items())
        keep = items if depth == 0 else items[:6]
        out = {k: _gist(v, depth + 1) for k, v in keep}
        if len(items) > len(keep):
            out["..."] = f"{len(items) - len(keep)} more"
        return out
    if isinstance(value, list):
        return [_gist(v, depth + 1) for v in value[:3]] + ([f"... {len(value) - 3} more"] if len(value) > 3 else [])
    return value


def _pick(body: Any, path: str) -> Any:
    """The part of an answer at a dotted path (None where it has none)."""
    for key in path.split("."):
        body = body.get(key) if isinstance(body, dict) else None
    return body


def _plugin_route_examples(base: str) -> None:
    """Each plugin route's example request (``ServeRouteSpec.example``), and a short view of its answer."""
    import json

    import httpx

    for spec in create_plugin_registry().specs("serve_routes").values():
        if spec.example is None:
            continue
        method = spec.methods[0]
        r = httpx.request(method, f"{base}{spec.path}", timeout=120, **dict(spec.example))
        body = r.json()
        if r.status_code != 200:
            console.print(f"{method} {spec.path}: {r.status_code} {body.get('error')}")
            continue
        shown = {path: _pick(body, path) for path in spec.shows} if spec.shows else body
        console.print(f"{method} {spec.path}: " + json.dumps(_gist(shown)))


def serve_once(settings: ServeSettings) -> int:
    """Start Ray Serve, ask for a combined signal over HTTP, print it, shut down cleanly."""
    import json

    import httpx

    from treum.registry.store import treum_home
    from treum.serve import ray_app

    console.rule("[bold]serving")
    start = time.perf_counter()
    ray_app.start(settings, None, treum_home())
    base = f"http://{settings.host}:{settings.direct_port if settings.direct_ingress else settings.port}/api/v1/ml"
    console.print(f"Ray Serve up in {time.perf_counter() - start:.1f}s; POST {base}/predict/price")
    try:
        answer = None
        for _ in range(60):
            r = httpx.post(f"{base}/predict/price", json={"instrument": "SPX"}, timeout=30)
            if r.status_code != 503:
                answer = r
                break
            time.sleep(1)
        if answer is None or answer.status_code != 200:
            console.print(f"[red]the service did not answer: {answer.text if answer else 'no answer'}[/]")
            return 1
        console.print_json(json.dumps(answer.json()))
        again = httpx.post(f"{base}/predict/price", json={"instrument": "SPX"}, timeout=30).json()
        console.print(f"the same request again: {again['timing_ms']['total']:.1f} ms inside the service "
                             f"(members cached: {all(m['cached'] for m in again['members'])})")
        # every task that has a model to answer it, through the generic route (GET /tasks says which)
        listing = httpx.get(f"{base}/tasks", timeout=30).json()
        combined = (listing.get("ensemble") or {}).get("task")
        for name, info in listing["tasks"].items():
            if info.get("input") == "text":
                continue  # texts, not an instrument's bars: its plugin route's example below shows it
            if not info.get("model"):
                # quiet for a task with nothing deployed, and for the ensemble's task: /predict/price answered it
                if info.get("status") != 503 and name != combined:
                    console.print(f"POST /predict/{name}: {info.get('status')} {info.get('error')}")
                continue
            known = info.get("instruments") or ["SPX"]  # a per-instrument model answers only its own
            r = httpx.post(f"{base}/predict/{name}", json={"instrument": "SPX" if "SPX" in known else known[0]},
                           timeout=30)
            if r.status_code != 200:
                console.print(f"POST /predict/{name}: {r.status_code} {r.json().get('error')}")
                continue
            body = r.json()
            values = ", ".join(f"{c}={body[c]:.4g}" for c in info["prediction_columns"])
            label = f" -> {body['label']}" if body.get("label") else ""
            console.print(f"POST /predict/{name}: {body['model']} v{body['version']} on {body['instrument']} as of "
                          f"{body['as_of'][:10]}: {values}{label}")
        _plugin_route_examples(base)
    finally:
        ray_app.stop()
    registry = Registry()
    from sqlalchemy import func, select

    from treum.registry.schema import MLPrediction, ModelServingLog

    with registry.sessions() as s:
        n_pred = s.execute(select(func.count()).select_from(MLPrediction)).scalar()
        n_req = s.execute(select(func.count()).select_from(ModelServingLog)).scalar()
    registry.close()
    console.print(f"service stopped cleanly; logged {n_pred} predictions and {n_req} requests in the registry")
    return 0
