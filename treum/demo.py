"""``treum demo``: the zoo end to end on packaged data.

For each evaluated task it runs the leaderboard (every model beside its
baselines, walk-forward, out of sample), registers every model, deploys the
best one that beat all its baselines (none, if none did: the demo says so
rather than deploy a loser), and prints the registry and the audit check.
"""

from __future__ import annotations

from treum import runner
from treum.configuration import compose_plain
from treum.core.plugins import create_plugin_registry
from treum.registry.store import Registry

DEMO_RUNS = (
    ("direction", "sp500"),
    ("volatility", "sp500"),
    ("regime", "sp500_index"),
)


def run() -> int:
    plugins = create_plugin_registry()
    deployed = []
    for task, data in DEMO_RUNS:
        overrides = [f"task={task}", f"data={data}"]
        cfg = compose_plain(overrides, plugins)
        names = runner.models_of_task(plugins, task)
        runner.console.rule(f"[bold]{task}[/] on {data}: {', '.join(names)} beside {len(runner.get_task(task).baselines)} baselines")
        outcome = runner.train_models(cfg, plugins, names, overrides, "leaderboard", register=True)
        runner.print_table(f"{task} leaderboard on {data} (walk-forward, out of sample)", runner.headline(outcome.table, task))
        runner.console.print(f"outputs: {outcome.run_dir}")
        validated = [r for r in outcome.registered if r["status"] == "validated"]
        order = list(outcome.table["model"])
        validated.sort(key=lambda r: order.index(r["name"]))
        registry = Registry(url=cfg.registry.get("url"))
        if validated:
            best = validated[0]
            registry.deploy(best["name"], best["version"], actor="demo", reason=f"best validated {task} model on {data}")
            deployed.append(f"{best['name']} v{best['version']}")
            runner.console.print(f"deployed [bold]{best['name']}[/] version {best['version']}: it beat every baseline")
        else:
            runner.console.print(f"[yellow]no {task} model beat all its baselines out of sample; nothing deployed[/]")
        registry.close()
    registry = Registry()
    runner.console.rule("[bold]registry")
    for m in registry.list_models():
        runner.console.print(f"{m.model_name:16s} v{m.model_version:3s} {m.model_type:11s} {m.deployment_status:10s} {m.id}")
    report = registry.verify_audit()
    runner.console.print(f"audit log: {report.rows} rows, chain {'intact' if report.ok else 'BROKEN at row ' + str(report.first_broken_id)}")
    runner.console.print(f"registry: {registry.url}")
    runner.console.print(f"deployed: {', '.join(deployed) or 'nothing'}")
    registry.close()
    return 0
