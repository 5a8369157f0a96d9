"""The serving settings (``conf/serve/ensemble.yaml``), validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treum.core.errors import ConfigError, did_you_mean

PLACEMENTS = ("local", "remote")


@dataclass(frozen=True)
class Member:
    name: str
    placement: str = "local"


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    direct_port: int = 8001
    direct_ingress: bool = True
    address: str | None = None
    require_key_for_predict: bool = False
    refresh_seconds: float = 2.0
    context_bars: int = 400
    max_bars: int = 2000
    min_bars: int = 260
    member_timeout_ms: float = 250.0
    min_members: int = 2
    cache_size: int = 4096
    cache_url: str | None = None
    log_batch_size: int = 200
    log_flush_seconds: float = 0.5
    volatility_model: str = "garch"
    regime_model: str = "markov_regime"
    regime_threshold: float = 0.5
    members: tuple[Member, ...] = ()
    weights: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "ServeSettings":
        cfg = dict(cfg)
        regime = dict(cfg.pop("regime", {}) or {})
        members_cfg = dict(cfg.pop("members", {}) or {})
        weights_cfg = {str(k): {str(m): float(w) for m, w in dict(v).items()} for k, v in dict(cfg.pop("weights", {}) or {}).items()}
        known = {f for f in cls.__dataclass_fields__} - {"members", "weights", "regime_model", "regime_threshold"}
        for key in cfg:
            if key not in known:
                raise ConfigError(f"serve.{key}: unknown key{did_you_mean(key, known)} (known: {', '.join(sorted(known))})")
        members = []
        for name, spec in members_cfg.items():
            placement = dict(spec or {}).get("placement", "local")
            if placement not in PLACEMENTS:
                raise ConfigError(f"serve.members.{name}.placement: must be local or remote, got {placement!r}")
            members.append(Member(str(name), placement))
        names = {m.name for m in members}
        for regime_name, weights in weights_cfg.items():
            for member, w in weights.items():
                if member not in names:
                    raise ConfigError(
                        f"serve.weights.{regime_name}.{member}: not a member{did_you_mean(member, names)} "
                        f"(members: {', '.join(sorted(names))})"
                    )
                if w < 0:
                    raise ConfigError(f"serve.weights.{regime_name}.{member}: weights cannot be negative")
        for regime_name in ("bull", "bear"):
            if regime_name not in weights_cfg:
                raise ConfigError(f"serve.weights.{regime_name} is missing: give a weight per member for each regime")
        settings = cls(
            **cfg,
            regime_model=str(regime.get("model", "markov_regime")),
            regime_threshold=float(regime.get("threshold", 0.5)),
            members=tuple(members),
            weights=weights_cfg,
        )
        if settings.min_members < 1:
            raise ConfigError("serve.min_members must be at least 1")
        if settings.min_bars > settings.max_bars:
            raise ConfigError("serve.min_bars cannot exceed serve.max_bars")
        return settings

    def as_dict(self) -> dict[str, Any]:
        """The YAML shape again (for the exported Serve config and for replicas)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("members", "weights", "regime_model", "regime_threshold")}
        out["regime"] = {"model": self.regime_model, "threshold": self.regime_threshold}
        out["members"] = {m.name: {"placement": m.placement} for m in self.members}
        out["weights"] = self.weights
        return out
