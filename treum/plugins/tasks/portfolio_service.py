"""What the portfolio task offers beyond its predictions: risk and rebalancing, over HTTP and the CLI.

- ``POST /api/v1/ml/predict/portfolio-risk`` (the specification's route) and ``treum portfolio risk``:
  VaR and expected shortfall of given weights, or of the deployed portfolio model's targets,
  by historical simulation, filtered historical simulation with GJR-GARCH and a Fama-French
  three-factor model (``treum.core.risk.portfolio_risk``).
- ``POST /api/v1/ml/portfolio/rebalance`` and ``treum portfolio rebalance``: from current holdings
  (market values) to the model's targets through the task's risk layer: the trades, their cost
  and the change of expected risk.
- ``GET /api/v1/ml/portfolio/weights`` and ``treum portfolio weights``: the deployed model's whole
  target portfolio as of a date.

The work (``treum.plugins.tasks.portfolio_advice``) is plain functions of a model, its task and a
panel; the HTTP endpoints and the CLI commands here only parse what they are given and answer with
the same functions (the service's stored bars, or the registry and the data set).
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.specs import CommandSpec, ServeRouteSpec
from treum.plugins.tasks.portfolio_advice import (
    MAX_VALUE,
    HostInputs,
    ServiceInputs,
    answer_rebalance,
    answer_risk,
    answer_weights,
)


# HTTP ------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RiskRequest(_Strict):
    weights: dict[str, float] | None = Field(
        default=None, max_length=500,
        description="instrument -> weight (long-only, summing to 1); omit for the deployed portfolio model's")
    data: str | None = Field(default=None, max_length=100, description="the data set of the instruments "
                             "(default: the deployed portfolio model's)")
    as_of: date | None = Field(default=None, description="the last bar used (default: the latest stored)")
    levels: list[float] = Field(default=[0.95, 0.99], min_length=1, max_length=4)
    horizons: list[int] = Field(default=[1, 10], min_length=1, max_length=4)
    window: int = Field(default=1000, ge=250, le=5000, description="bars of history behind the figures")
    factors: bool = Field(default=True, description="include the Fama-French three-factor model")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if not all(0.5 <= x < 1 for x in v):
            raise ValueError("each level is a confidence in [0.5, 1), such as 0.99")
        return v

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, v: list[int]) -> list[int]:
        if not all(1 <= h <= 63 for h in v):
            raise ValueError("each horizon is a number of bars from 1 to 63")
        return v


class RebalanceRequest(_Strict):
    holdings: dict[str, float] = Field(max_length=500, description="instrument -> market value held now")
    cash: float = Field(default=0.0, ge=0, le=MAX_VALUE, description="cash held now, in the same currency")
    target: dict[str, float] | None = Field(
        default=None, max_length=500, description="target weights (default: the deployed portfolio model's)")
    data: str | None = Field(default=None, max_length=100)
    as_of: date | None = None
    cost_bps: float | None = Field(default=None, ge=0, le=500, description="default: the task's cost_bps")


def portfolio_risk_endpoint(body: RiskRequest, request: Request) -> dict[str, Any]:
    """VaR and expected shortfall of given weights or of the deployed portfolio model's targets."""
    return answer_risk(ServiceInputs(request.app.state.get_service()), body.weights, body.data, body.as_of,
                       body.levels, body.horizons, body.window, body.factors)


def rebalance_endpoint(body: RebalanceRequest, request: Request) -> dict[str, Any]:
    """Trades from the holdings to the targets (given, or the deployed model's), their cost and the risk change."""
    return answer_rebalance(ServiceInputs(request.app.state.get_service()), body.holdings, body.cash, body.target,
                            body.data, body.as_of, body.cost_bps)


def weights_endpoint(request: Request, as_of: date | None = None) -> dict[str, Any]:
    """The deployed portfolio model's target weights as of a date (default: the latest stored bar)."""
    return answer_weights(ServiceInputs(request.app.state.get_service()), as_of)


@hookimpl
def treum_serve_routes() -> list[ServeRouteSpec]:
    # a sync endpoint: FastAPI runs it in its thread pool, off the event loop (GARCH fits take a second)
    return [
        ServeRouteSpec("portfolio-weights", "/portfolio/weights", weights_endpoint, ("GET",), scope="predict",
                       example={}, shows=("model", "as_of", "rebalanced_on", "weights"), task="portfolio"),
        ServeRouteSpec("portfolio-risk", "/predict/portfolio-risk", portfolio_risk_endpoint, ("POST",),
                       scope="predict", example={"json": {"weights": {"AAPL": 0.4, "JNJ": 0.3, "XOM": 0.3},
                                                          "data": "sp500_stocks", "as_of": "2018-11-30"}},
                       shows=("window", "historical.var_99_h1", "historical.es_99_h1", "historical.var_99_h10",
                              "filtered_historical.var_99_h1", "filtered_historical.var_99_h10",
                              "factor.var_99_h1", "factor.risk_by_factor", "factor.risk_by_asset")),
        ServeRouteSpec("portfolio-rebalance", "/portfolio/rebalance", rebalance_endpoint, ("POST",), scope="predict",
                       example={"json": {"holdings": {"AAPL": 60_000, "XOM": 40_000}, "cash": 10_000}}, task="portfolio",
                       shows=("source", "portfolio_value", "trades", "traded_value", "cost",
                              "risk.current.historical_var_99_h1", "risk.target.historical_var_99_h1")),
    ]


# the CLI -----------------------------------------------------------------------
def _mapping(text: str | None, what: str) -> dict[str, float] | None:
    """``AAPL=0.5,XOM=0.5`` -> {'AAPL': 0.5, 'XOM': 0.5}."""
    if text is None:
        return None
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise TreumError(f"{what}: '{part}' is not NAME=NUMBER (e.g. AAPL=0.5,XOM=0.5)")
    return out


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="portfolio_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", help="the deployed portfolio model to use (when several are deployed)")
    common.add_argument("--data", help="the data set of the instruments (default: the deployed model's)")
    common.add_argument("--as-of", type=date.fromisoformat, help="the last bar used, YYYY-MM-DD (default: the latest)")
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    risk = sub.add_parser("risk", parents=[common], help="VaR and expected shortfall of weights or of the model's")
    risk.add_argument("--weights", help="NAME=WEIGHT,... (default: the deployed model's targets)")
    risk.add_argument("--window", type=int, default=1000, help="bars of history behind the figures")
    reb = sub.add_parser("rebalance", parents=[common], help="the trades from your holdings to the model's targets")
    reb.add_argument("--holdings", required=True, help="NAME=MARKET_VALUE,... held now")
    reb.add_argument("--cash", type=float, default=0.0, help="cash held now")
    reb.add_argument("--target", help="NAME=WEIGHT,... (default: the deployed model's targets)")
    reb.add_argument("--cost-bps", type=float, default=None, help="default: the task's cost_bps")
    sub.add_parser("weights", parents=[common], help="the deployed model's target weights")


def _run(args: argparse.Namespace, host: Any) -> int:
    import json

    from rich.console import Console

    from pydantic import ValidationError

    console = Console()
    inputs = HostInputs(host, args.model)
    try:
        answer = _answer(args, inputs)
    except ValidationError as exc:  # the same checks as the HTTP body's, as one line
        raise TreumError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    else:
        console.print_json(json.dumps(answer, default=str))
    return 0


def _answer(args: argparse.Namespace, inputs: HostInputs) -> dict[str, Any]:
    """What ``treum portfolio <command>`` prints: the routes' answers, from the registry and the data set."""
    if args.portfolio_command == "risk":
        req = RiskRequest(weights=_mapping(args.weights, "--weights"), data=args.data, as_of=args.as_of,
                          window=args.window)
        return answer_risk(inputs, req.weights, req.data, req.as_of, req.levels, req.horizons, req.window)
    if args.portfolio_command == "rebalance":
        req = RebalanceRequest(holdings=_mapping(args.holdings, "--holdings") or {}, cash=args.cash,
                               target=_mapping(args.target, "--target"), data=args.data, as_of=args.as_of,
                               cost_bps=args.cost_bps)
        return answer_rebalance(inputs, req.holdings, req.cash, req.target, req.data, req.as_of, req.cost_bps)
    if args.data:
        inputs.instruments(args.data)
    return answer_weights(inputs, args.as_of)


@hookimpl
def treum_commands() -> list[CommandSpec]:
    return [CommandSpec("portfolio", "the deployed portfolio model's weights, their risk, and rebalancing trades",
                        _configure, _run)]
