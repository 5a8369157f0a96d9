"""MarketGNN: two graph convolutions over a correlation graph of the universe, then a classifier.

The specification's model (``GCNConv`` x2 and a linear head, torch-geometric) for the
``cross_section`` task. At each refit the graph is built from the trailing
``graph_bars`` bars of the returns the fit is given (training and validation rows,
never the test block): an edge j -> i when |corr(r_i, r_j)| clears ``threshold``
(``graph: threshold``) or when j is one of i's ``k`` most correlated stocks
(``graph: topk``: every node receives exactly k messages), weighted by |corr|,
plus self-loops (``GCNConv``'s own). Node features are the technical ``f_*``
columns of each stock on day t, standardised with the training statistics.

One graph snapshot per day: the nodes are the stocks with every feature present
that day and the edges those of the fitted graph between them, so message passing
never reaches a stock that is absent. The head predicts the probability that the
stock's forward return beats the day's cross-sectional median (``target_up``,
binary cross-entropy); ``score`` is that probability. Early stopping on the mean
daily rank IC of the validation rows.

It declares ``cross_sectional``: serving gives it the stored bars of every stock it
was fitted on, with the asked stock's last row last, and answers that row of the
whole graph. On one stock's rows alone the graph is restricted to the nodes present
(a self-loop, no neighbour's message); a stock the graph does not know is scored
that way. Weights are saved with safetensors, the graph, feature list
and scaler as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.early_stopping import EarlyStopping
from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import Model, feature_columns
from treum.core.specs import ModelSpec


@dataclass
class MarketGNNConfig:
    graph: Literal["threshold", "topk"] = "topk"
    threshold: float = 0.5  # |corr| at or above it makes an edge (graph: threshold)
    k: int = 4  # neighbours per stock (graph: topk)
    graph_bars: int = 252  # trailing bars of returns the correlations are computed on
    weighted: bool = True  # edge weight |corr| (else 1)
    hidden: int = 32
    dropout: float = 0.2
    lr: float = 0.01
    weight_decay: float = 0.0001
    batch_days: int = 256  # day snapshots per mini-batch
    max_epochs: int = 8
    patience: int = 2  # epochs without a better validation IC before stopping
    clip: float = 5.0  # standardised features are clipped to [-clip, clip]
    seed: int = 0
    num_threads: int = 1  # day snapshots are tiny: one thread beats two that wait on each other
    accelerator: Literal["cpu", "auto"] = "cpu"  # auto: a GPU when there is one

    def validate(self) -> str | None:
        if self.graph == "threshold" and not 0 <= self.threshold <= 1:
            return f"threshold is an absolute correlation in [0, 1], got {self.threshold}"
        if self.k < 1:
            return f"k must be at least 1, got {self.k}"
        if self.graph_bars < 20:
            return f"graph_bars must be at least 20 to estimate correlations, got {self.graph_bars}"
        if self.hidden < 1 or self.batch_days < 1 or self.max_epochs < 1:
            return "hidden, batch_days and max_epochs must be positive"
        if not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), got {self.dropout}"
        return None


def correlation_graph(data: pd.DataFrame, cfg: MarketGNNConfig) -> tuple[list[str], list[list[float]]]:
    """(entities, edges [src, dst, weight]) from the last ``graph_bars`` bars of ``data``'s log returns."""
    close = data["close"].astype(float).unstack("entity").sort_index()
    entities = [str(e) for e in close.columns]
    rets = np.log(close).diff().iloc[-cfg.graph_bars:]
    corr = rets.corr(min_periods=max(20, cfg.graph_bars // 2)).to_numpy()
    a = np.abs(corr)
    np.fill_diagonal(a, np.nan)
    edges: list[list[float]] = []
    for dst in range(len(entities)):
        col = a[:, dst]
        cand = np.flatnonzero(np.isfinite(col))
        if cfg.graph == "topk":
            order = cand[np.argsort(-col[cand], kind="stable")][: cfg.k]
        else:
            order = cand[col[cand] >= cfg.threshold]
        for src in sorted(order.tolist()):
            edges.append([float(src), float(dst), float(col[src]) if cfg.weighted else 1.0])
    return entities, edges


def _net(n_features: int, cfg: MarketGNNConfig) -> Any:
    import torch
    from torch import nn
    from torch_geometric.nn import GCNConv

    class MarketGNN(nn.Module):
        """GCNConv -> ReLU -> dropout -> GCNConv -> ReLU -> linear logit of P(beats the day's median)."""

        def __init__(self) -> None:
            super().__init__()
            self.gconv1 = GCNConv(n_features, cfg.hidden)
            self.gconv2 = GCNConv(cfg.hidden, cfg.hidden)
            self.classifier = nn.Linear(cfg.hidden, 1)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.gconv1(x, edge_index, edge_weight))
            h = nn.functional.dropout(h, p=cfg.dropout, training=self.training)
            h = torch.relu(self.gconv2(h, edge_index, edge_weight))
            return self.classifier(h).squeeze(-1)

    return MarketGNN()


@dataclass
class Snapshots:
    """Day snapshots of a frame: rows with every feature present, sorted by day, and their edges."""

    rows: np.ndarray  # positions in the frame, sorted by day
    day: np.ndarray  # day number of each row
    x: np.ndarray  # standardised features of each row
    edge_src: np.ndarray  # row numbers (into ``rows``) of each edge's source
    edge_dst: np.ndarray
    edge_w: np.ndarray
    edge_day: np.ndarray
    n_days: int


class MarketGNNModel(Model):
    """The MarketGNN of the specification, on the cross_section task."""

    def _snapshots(self, data: pd.DataFrame) -> Snapshots:
        values = data[self.features_].to_numpy(dtype=float)
        ok = np.isfinite(values).all(axis=1)
        ts = data.index.get_level_values("timestamp")
        days, day = np.unique(ts.values, return_inverse=True)
        ent = data.index.get_level_values("entity").astype(str)
        lookup = {e: i for i, e in enumerate(self.entities_)}
        node = np.array([lookup.get(e, -1) for e in ent], dtype=int)
        rows = np.flatnonzero(ok)
        rows = rows[np.argsort(day[rows], kind="stable")]
        x = (values[rows] - self.mean_) / self.scale_
        x = np.clip(x, -self.config.clip, self.config.clip)
        # position of each (day, graph node) among the kept rows; unknown stocks get no edges
        n_nodes = max(len(self.entities_), 1)
        pos = np.full((len(days), n_nodes), -1, dtype=np.int64)
        known = node[rows] >= 0
        pos[day[rows][known], node[rows][known]] = np.flatnonzero(known)
        e = self.edges_
        if len(e) and len(rows):
            src = pos[:, e[:, 0].astype(int)]
            dst = pos[:, e[:, 1].astype(int)]
            both = (src >= 0) & (dst >= 0)
            edge_day = np.nonzero(both)[0]
            w = np.broadcast_to(e[:, 2], both.shape)[both]
            src, dst = src[both], dst[both]
        else:
            src = dst = edge_day = np.zeros(0, dtype=np.int64)
            w = np.zeros(0)
        return Snapshots(rows, day[rows], x, src, dst, w, edge_day, len(days))

    @staticmethod
    def _batch(s: Snapshots, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row numbers, edge_index, edge weights, batch positions) of the snapshots of ``days``."""
        pick = np.zeros(s.n_days, dtype=bool)
        pick[days] = True
        rmask = pick[s.day]
        new_id = np.cumsum(rmask) - 1
        emask = pick[s.edge_day]
        edge_index = np.vstack([new_id[s.edge_src[emask]], new_id[s.edge_dst[emask]]])
        return np.flatnonzero(rmask), edge_index, s.edge_w[emask], emask

    def _device(self) -> Any:
        import torch

        if self.config.accelerator == "auto" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    def _forward(self, s: Snapshots, batch_days: int = 512) -> np.ndarray:
        """Logits of every kept row, snapshot by snapshot (each day's graph holds its own nodes only)."""
        import torch

        out = np.full(len(s.rows), np.nan)
        dev = self._device()
        self.net_.eval()
        with torch.no_grad():
            for start in range(0, s.n_days, batch_days):
                days = np.arange(start, min(start + batch_days, s.n_days))
                rows, ei, w, _ = self._batch(s, days)
                if not len(rows):
                    continue
                logit = self.net_(torch.as_tensor(s.x[rows], dtype=torch.float32, device=dev),
                                  torch.as_tensor(ei, dtype=torch.long, device=dev),
                                  torch.as_tensor(w, dtype=torch.float32, device=dev))
                out[rows] = logit.double().cpu().numpy()
        return out

    def _valid_ic(self, s: Snapshots, frame: pd.DataFrame) -> float:
        from treum.plugins.tasks.cross_section import daily_rank_ic

        logit = self._forward(s)
        sub = frame.iloc[s.rows][["target_ret"]].assign(score=logit)
        ic = daily_rank_ic(sub, "score", "target_ret", min_stocks=3)
        return float(ic.mean()) if len(ic) else float("nan")

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import torch

        cfg = self.config
        for col in ("close", "target_up", "target_ret"):
            if col not in data.columns:
                raise TreumError(f"market_gnn trains on the cross_section task's labels and closes; "
                                 f"the training data has no '{col}' column")
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.set_num_threads(cfg.num_threads)
        self.features_ = feature_columns(data)
        if not self.features_:
            raise TreumError("market_gnn uses features, but the data has no f_* columns (features=technical)")
        full = self.join_valid(data, valid)
        entities, edges = correlation_graph(full, cfg)  # training and validation closes only
        self.entities_ = entities
        self.edges_ = np.asarray(edges, dtype=float).reshape(-1, 3)
        train = data[data["target_up"].notna()]
        values = train[self.features_].to_numpy(dtype=float)
        values = values[np.isfinite(values).all(axis=1)]
        if len(values) < 100:
            raise TreumError(f"market_gnn needs at least 100 labelled stock-days with every feature, got {len(values)}")
        self.mean_ = values.mean(axis=0)
        self.scale_ = values.std(axis=0)
        self.scale_[~(self.scale_ > 0)] = 1.0
        s = self._snapshots(train)
        y = train["target_up"].to_numpy(dtype=float)[s.rows]
        dev = self._device()
        self.net_ = _net(len(self.features_), cfg).to(dev)
        opt = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        vs = None
        if valid is not None and len(valid) and valid["target_ret"].notna().any():
            vs = self._snapshots(valid)
        gen = torch.Generator().manual_seed(cfg.seed)
        stopper = EarlyStopping(cfg.patience, higher_is_better=True)
        self.epochs_ = 0
        for epoch in range(cfg.max_epochs):
            self.net_.train()
            order = torch.randperm(s.n_days, generator=gen).numpy()
            for start in range(0, s.n_days, cfg.batch_days):
                rows, ei, w, _ = self._batch(s, np.sort(order[start:start + cfg.batch_days]))
                if not len(rows):
                    continue
                logit = self.net_(torch.as_tensor(s.x[rows], dtype=torch.float32, device=dev),
                                  torch.as_tensor(ei, dtype=torch.long, device=dev),
                                  torch.as_tensor(w, dtype=torch.float32, device=dev))
                loss = loss_fn(logit, torch.as_tensor(y[rows], dtype=torch.float32, device=dev))
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epochs_ = epoch + 1
            if vs is None:
                continue
            if stopper.step(self._valid_ic(vs, valid), self.net_):
                break
        stopper.restore(self.net_)
        self.valid_ic_ = stopper.best_or_none

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        """P(beats the day's median) for each row; every stock of a day in one snapshot; NaN in warm-up."""
        s = self._snapshots(data)
        out = np.full(len(data), np.nan)
        if len(s.rows):
            out[s.rows] = 1.0 / (1.0 + np.exp(-self._forward(s)))
        return pd.DataFrame({"score": out}, index=data.index)

    def graph(self) -> pd.DataFrame:
        """The fitted graph's edges by entity name: source, target, weight."""
        e = self.edges_
        return pd.DataFrame({"source": [self.entities_[int(i)] for i in e[:, 0]],
                             "target": [self.entities_[int(i)] for i in e[:, 1]], "weight": e[:, 2]})

    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()},
                  str(directory / "weights.safetensors"))
        (directory / "state.json").write_text(json.dumps({
            "features": self.features_, "entities": self.entities_, "edges": self.edges_.tolist(),
            "mean": self.mean_.tolist(), "scale": self.scale_.tolist(), "epochs": self.epochs_,
            "valid_ic": self.valid_ic_,
        }, indent=1))

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        state = json.loads((directory / "state.json").read_text())
        self.features_, self.entities_ = state["features"], state["entities"]
        self.edges_ = np.asarray(state["edges"], dtype=float).reshape(-1, 3)
        self.mean_, self.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        self.epochs_, self.valid_ic_ = state["epochs"], state["valid_ic"]
        self.net_ = _net(len(self.features_), self.config).to(self._device())
        self.net_.load_state_dict(load_file(str(directory / "weights.safetensors")))


MarketGNNModel.spec = ModelSpec(
    name="market_gnn",
    family="graph_neural_network",
    task="cross_section",
    capabilities=frozenset({"multi_asset", "uses_features", "gpu", "probabilistic", "cross_sectional"}),
    config_cls=MarketGNNConfig,
    factory=MarketGNNModel,
    description="two GCNConv layers over a correlation graph of the universe, classifier of beating the "
                "day's median (torch-geometric)",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [MarketGNNModel.spec]
