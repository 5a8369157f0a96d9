"""Sample release-report documents (the JSON twin) for the renderer's tests and README screenshot.

``sample_report()`` is complete: a ranking model with fairness and drift, and a direction model
without fairness but with conformal intervals. The variants remove or poison parts of a copy.
"""

from __future__ import annotations

import copy
from typing import Any

HOSTILE = "<script>alert(1)</script>"

# Plots the renderer should draw for sample_report(), counted by hand from the document:
# ltr_lambdarank: primary metric, importance, SHAP, LIME, fairness by 2 segments = 6;
# gbm_direction: primary metric, importance, SHAP, LIME = 4 (no fairness, so no group plots).
SAMPLE_PLOTS = 10
# without_optional_parts(): ltr_lambdarank keeps primary metric and importance, gbm_direction
# keeps its primary metric only.
STRIPPED_PLOTS = 3

# 18 features, so the "top 15" cut of the importance plot is exercised.
RANKING_FEATURES = [
    "f_user_follow_rate", "f_signal_sharpe_60d", "f_user_risk_match", "f_signal_age_days",
    "f_user_tenure", "f_signal_hit_rate", "f_momentum_20d", "f_volatility_20d",
    "f_user_region_eu", "f_user_account_size", "f_signal_turnover", "f_signal_drawdown",
    "f_user_trades_30d", "f_user_experience", "f_signal_popularity", "f_signal_sector_tech",
    "f_user_last_login_days", "f_signal_author_rank",
]  # fmt: skip
DIRECTION_FEATURES = ["ret_1", "ret_5", "ret_21", "rsi_14", "vol_21", "macd", "atr_14", "volume_z"]


def _importance(names: list[str], scale: float) -> list[dict[str, Any]]:
    return [{"feature": n, "importance": round(scale / (i + 1), 3)} for i, n in enumerate(names)]


def _shap(names: list[str], scale: float) -> dict[str, Any]:
    values = [{"feature": n, "mean_abs_shap": round(scale / (i + 1), 4)} for i, n in enumerate(names)]
    return {"method": "tree", "values_in": "log-odds", "rows_explained": 200, "ranking": values}


def _row(label: str, kind: str, **metrics: float) -> dict[str, Any]:
    return {"label": label, "kind": kind, "metrics": metrics}


def _check(check: str, segment: str, value: float, threshold: float = 0.1) -> dict[str, Any]:
    return {"check": check, "segment": segment, "value": value, "threshold": threshold,
            "passed": value <= threshold}  # fmt: skip


def _group(group: str, n: int, sel: float, tpr: float, ndcg: float) -> dict[str, Any]:
    return {"group": group, "n": n, "selection_rate": sel, "true_positive_rate": tpr,
            "ndcg_at_5": ndcg}  # fmt: skip


def ranking_model() -> dict[str, Any]:
    """A LightGBM LambdaRank model on simulated users: fairness and drift, no conformal."""
    ci = {"ndcg_at_5_ci_low": 0.60, "ndcg_at_5_ci_high": 0.62, "map_ci_low": 0.48}
    return {
        "name": "ltr_lambdarank", "version": 3, "task": "ranking", "family": "lightgbm",
        "status": "deployed",
        "description": "Ranks trading signals for each user by the chance they follow them.",
        "artifact_sha256": "ab12" + "0" * 56 + "cd34",
        "data": {
            "name": "users_sim", "simulated": True,
            "period": {"train": ["2020-01-01", "2021-06-30"], "test": ["2021-07-01", "2021-12-31"]},
            "caveat": "SIMULATED users from treum's seeded simulator; not evidence about people.",
        },
        "card": {
            "intended_use": "Ordering the signal feed of a demo app.",
            "limitations": ["Trained on simulated behaviour only.", "Cold starts get popularity."],
            "scheme": "walk-forward, out of sample", "primary_metric": "ndcg_at_5",
            "higher_is_better": True,
        },
        "metrics": {"headline": ["ndcg_at_5", "map", "hit_at_1"], "rows": [
            _row("ltr_lambdarank", "model", ndcg_at_5=0.61, map=0.5, map_ci_high=0.52,
                 hit_at_1=0.4123, n=1200, **ci),
            _row("popularity", "baseline", ndcg_at_5=0.4711, ndcg_at_5_ci_low=0.455,
                 ndcg_at_5_ci_high=0.487, map=0.39, hit_at_1=0.2817, n=1200),
            _row("random", "baseline", ndcg_at_5=0.3302, ndcg_at_5_ci_low=0.318,
                 ndcg_at_5_ci_high=0.342, map=0.25, hit_at_1=0.1999, n=1200),
        ]},
        "explanations": {
            "importance": {"method": "native gain", "importances": _importance(RANKING_FEATURES, 40)},
            "shap": _shap(RANKING_FEATURES[:10], 0.3),
            "lime": {"row": "2021-12-31 / u0001:momentum", "intercept": 0.4, "score": 0.8,
                     "weights": [{"condition": "f_user_follow_rate > 0.6", "weight": 0.21},
                                 {"condition": "f_signal_sharpe_60d > 1.1", "weight": 0.12},
                                 {"condition": "f_user_risk_match <= 0.3", "weight": -0.1},
                                 {"condition": "f_signal_age_days > 20", "weight": -0.05}]},
            "decision_tree": {
                "max_depth": 3,
                "fidelity": {"r2": 0.91, "mae": 0.02, "label_agreement": 0.95, "n_fit": 800,
                             "n_held_out": 200},
                "rules": "|--- f_user_follow_rate <= 0.5\n|   |--- value: [0.2]\n"
                         "|--- f_user_follow_rate >  0.5\n|   |--- value: [0.7]\n",
            },
            "counterfactual": {"rows": [
                {"row": "2021-12-31 / u0001:momentum", "found": True,
                 "original": {"prediction": 0.7, "label": "followed"},
                 "counterfactual": {"prediction": 0.45, "label": "ignored"},
                 "changes": {"f_user_risk_match": [0.3, 0.1]}, "distance": 0.8},
                {"row": "2021-12-31 / u0002:value", "found": False,
                 "original": {"prediction": 0.9, "label": "followed"},
                 "counterfactual": {"prediction": None, "label": None}, "changes": {}, "distance": None},
            ]},
            "skipped": {"conformal": "the task 'ranking' defines no calibrated target"},
        },
        "fairness": {
            "outcome": "a signal recommended (top 3) vs. followed",
            "segments": ["risk_tolerance", "region"],
            "checks": [
                _check("demographic_parity_difference", "region", 0.04),
                _check("equalized_odds_difference", "region", 0.07),
                _check("demographic_parity_difference", "risk_tolerance", 0.1432),
            ],
            "by_group": {
                "region": [_group("EU", 300, 0.3, 0.5, 0.6), _group("US", 500, 0.32, 0.55, 0.62),
                           _group("APAC", 400, 0.28, 0.48, 0.59)],
                "risk_tolerance": [_group("low", 350, 0.22, 0.41, 0.57),
                                   _group("high", 450, 0.3632, 0.6, 0.64)],
            },
        },
        "drift": {"features": [{"feature": "f_user_follow_rate", "psi": 0.02, "ks_p": 0.4},
                               {"feature": "f_signal_sharpe_60d", "psi": 0.27, "ks_p": 0.001}],
                  "note": "train window vs. the last 30 days of served requests"},
    }  # fmt: skip


def direction_model() -> dict[str, Any]:
    """A LightGBM direction model on real S&P 500 data: conformal, no fairness, no drift."""
    return {
        "name": "gbm_direction", "version": 1, "task": "direction", "family": "lightgbm",
        "status": "deployed",
        "description": "Next-day direction of the S&P 500 from technical features.",
        "artifact_sha256": "ef56" + "1" * 56 + "7890",
        "data": {"name": "sp500", "simulated": False, "period": {
            "train": ["2004-01-01", "2010-12-31"], "test": ["2011-01-01", "2012-12-31"]}},
        "card": {"intended_use": "Research baseline; not a trading recommendation.",
                 "limitations": ["One index; no transaction costs."],
                 "scheme": "walk-forward, expanding window, purge 1 bar",
                 "primary_metric": "auc", "higher_is_better": True},
        "metrics": {"headline": ["accuracy", "balanced_accuracy", "auc"], "rows": [
            _row("gbm_direction", "model", accuracy=0.5312, accuracy_ci_low=0.51,
                 accuracy_ci_high=0.552, balanced_accuracy=0.5204, auc=0.5391,
                 auc_ci_low=0.5123, auc_ci_high=0.5655, n=503),
            _row("always_up", "baseline", accuracy=0.5388, balanced_accuracy=0.5, auc=0.5, n=503),
            _row("logistic_lagged", "baseline", accuracy=0.5109, balanced_accuracy=0.5087,
                 auc=0.5102, auc_ci_low=0.4851, auc_ci_high=0.5366, n=503),
        ]},
        "explanations": {
            "importance": {"method": "native gain", "importances": _importance(DIRECTION_FEATURES, 9)},
            "shap": _shap(DIRECTION_FEATURES, 0.05),
            "lime": {"row": "2012-12-31 / ^GSPC", "intercept": 0.51, "score": 0.56,
                     "weights": [{"condition": "ret_1 <= -0.01", "weight": 0.03},
                                 {"condition": "rsi_14 > 70", "weight": -0.02}]},
            "decision_tree": {
                "max_depth": 3,
                "fidelity": {"r2": 0.62, "mae": 0.04, "label_agreement": 0.81, "n_fit": 400,
                             "n_held_out": 103},
                "rules": "|--- rsi_14 <= 70.0\n|   |--- class: up\n"
                         "|--- rsi_14 >  70.0\n|   |--- class: down\n",
            },
            "counterfactual": {"rows": [
                {"row": "2012-12-31 / ^GSPC", "found": True,
                 "original": {"prediction": 0.56, "label": "up"},
                 "counterfactual": {"prediction": 0.48, "label": "down"},
                 "changes": {"ret_1": [-0.012, 0.004]}, "distance": 0.3}]},
            "conformal": {"alpha": 0.1, "target_coverage": 0.9, "coverage": 0.893,
                          "mean_width": 0.41, "n_calibration": 500, "n_evaluation": 500},
        },
        "fairness": None,
        "drift": None,
    }  # fmt: skip


def sample_report() -> dict[str, Any]:
    """A complete report document: two models, an audit excerpt and notes."""
    def deploy(at: str, actor: str, action: str, model: str, version: int, reason: str,
               forced: bool = False) -> dict[str, Any]:  # fmt: skip
        return {"at": f"2026-12-01T{at}+00:00", "actor": actor, "action": action, "model": model,
                "version": version, "reason": reason, "forced": forced}  # fmt: skip

    return {
        "release": "2026-12-01-demo", "created_at": "2026-12-01T14:00:00+00:00",
        "created_by": "alice", "treum_version": "0.1.0", "registry": "sqlite (TREUM_HOME)",
        "simulated_data": True,
        "models": [ranking_model(), direction_model()],
        "audit": [
            deploy("13:58:00", "alice", "deploy", "gbm_direction", 1, "release 2026-12-01"),
            deploy("13:59:00", "alice", "deploy", "ltr_lambdarank", 3, "release 2026-12-01"),
            deploy("13:59:30", "bob", "rollback", "ltr_lambdarank", 2, "drill: roll back", True),
        ],
        "notes": ["Users, trades and feedback are simulated; see the banner.",
                  "S&P 500 data from arch.data, 2004-2012."],
    }  # fmt: skip


def with_hostile_text(report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report with markup in user-typed fields: a deploy reason, a note, a description."""
    out = copy.deepcopy(report or sample_report())
    out["audit"].append({"at": "2026-12-01T14:00:00+00:00", "actor": "mallory", "action": "deploy",
                         "model": "ltr_lambdarank", "version": 3, "reason": HOSTILE,
                         "forced": False})  # fmt: skip
    out["notes"].append(f'<img src=x onerror="alert(2)"> & {HOSTILE}')
    out["models"][0]["description"] = HOSTILE
    return out


def without_optional_parts(report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Explanations removed (some with a reason, some silently), fairness and drift absent/null."""
    out = copy.deepcopy(report or sample_report())
    ranking, direction = out["models"]
    for key in ("shap", "lime", "counterfactual"):
        ranking["explanations"].pop(key)
    ranking["explanations"]["skipped"]["shap"] = "no TreeExplainer for LambdaRank's objective"
    ranking.pop("fairness")
    ranking["drift"] = None
    direction["explanations"] = None
    return out
