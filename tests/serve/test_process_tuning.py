"""What a serving process changes about itself: the garbage collector (only where it serves) and FastAPI's
OpenTelemetry hook (off unless a provider is set up)."""

from __future__ import annotations

import gc

import pytest

from treum.serve import router


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
    gc.unfreeze()


def test_only_a_serving_process_retunes_its_collector(thresholds, monkeypatch):
    monkeypatch.setattr(router, "_GC_TUNED", False)
    before = gc.get_threshold()
    router.settle_heap()  # a library call in a process that never said it serves: nothing changes
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    router.tune_gc(0)  # 0 keeps Python's own
    assert gc.get_threshold() == before and router._GC_TUNED is False
    router.tune_gc(50_000)
    assert gc.get_threshold()[0] == 50_000 and router._GC_TUNED is True
    router.settle_heap()  # what is loaded now is out of the collector's full passes
    assert gc.get_freeze_count() > 0


def test_fastapi_telemetry_is_off_unless_a_provider_is_set_up(monkeypatch):
    from treum.serve.api import _telemetry

    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    assert _telemetry() == {"tracing": False, "metrics": False, "logs": False}
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert _telemetry() is None  # FastAPI's own behaviour: it configures and reports
