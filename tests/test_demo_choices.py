"""What `treum demo` runs and deploys: no ablations or models too slow for two cores, and a model for each route it shows."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from treum.commands import run as stages
from treum.commands.demo import serving_needs
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.specs import ServeRouteSpec
from treum.serve.settings import ServeSettings

PLUGINS = create_plugin_registry(PluginSettings())


def test_the_demo_leaves_out_ablations_and_costly_models_that_leaderboards_run():
    every = stages.models_of_task(PLUGINS, "direction")
    shown = stages.models_of_task(PLUGINS, "direction", demo=True)
    assert "multimodal_fusion_no_text" in every and "multimodal_fusion_no_text" not in shown
    assert "multimodal_fusion" in shown and "chart_cnn" in shown
    assert sorted(stages.models_of_task(PLUGINS, "sentiment")) == ["minilm_finetuned", "minilm_lr"]
    assert stages.models_of_task(PLUGINS, "sentiment", demo=True) == ["minilm_lr"]


def row(name, task, status, score):
    return SimpleNamespace(model_name=name, model_type=task, deployment_status=status, created_at=datetime(2026, 1, 1),
                           custom_metrics={"walk_forward": {"accuracy": score}})


def test_a_route_that_needs_a_task_s_model_gets_the_best_registered_one():
    registry = SimpleNamespace(list_models=lambda: [row("minilm_lr", "sentiment", "registered", 0.74),
                                                    row("other_text", "sentiment", "registered", 0.70)])
    settings = ServeSettings.from_config({"regime": None, "ensemble": None, "aliases": {}})
    route = ServeRouteSpec("predict-sentiment", "/predict/sentiment", lambda: None, ("POST",),
                           example={"json": {"text": "x"}}, task="sentiment")
    silent = ServeRouteSpec("no-example", "/x", lambda: None, task="sentiment")
    assert serving_needs(registry, settings, PLUGINS.specs("tasks"), {"a": route}) == ["minilm_lr"]
    assert serving_needs(registry, settings, PLUGINS.specs("tasks"), {"b": silent}) == []
