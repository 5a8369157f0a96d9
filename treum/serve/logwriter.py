"""Prediction and serving logs, written in batches by a background thread.

The request path only appends to a queue. ``close()`` stops the thread after it
has written everything queued, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import insert, update

from treum.registry.schema import MLModel, MLPrediction, ModelServingLog

log = logging.getLogger(__name__)
_STOP = object()


def _insert_grouped(session, table, rows: list[dict]) -> None:
    """Core executemany, a fraction of the ORM's cost in the requests' own process.

    One statement per set of keys (an executemany takes one shape); Core fills the
    columns a row leaves out from their Python-side defaults (ids, timestamps).
    """
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        shapes.setdefault(tuple(sorted(row)), []).append(row)
    for group in shapes.values():
        session.execute(insert(table), group)


class BatchLogWriter:
    def __init__(self, sessions, batch_size: int = 200, flush_seconds: float = 0.5):
        self.sessions = sessions
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue = queue.Queue()
        self.written = 0
        self.failed_batches = 0
        self._thread = threading.Thread(target=self._run, name="treum-log-writer", daemon=True)
        self._thread.start()

    def prediction(self, **row: Any) -> None:
        self._queue.put(("prediction", row))

    def serving(self, **row: Any) -> None:
        self._queue.put(("serving", row))

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = []
            try:
                item = self._queue.get(timeout=self.flush_seconds)
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            if batch:
                self._write(batch)
        # drain whatever arrived after the stop marker
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rest.append(item)
        if rest:
            self._write(rest)

    def _write(self, batch: list[tuple[str, dict]]) -> None:
        for attempt in range(3):
            try:
                with self.sessions.begin() as s:
                    served: Counter = Counter()
                    predictions = [row for kind, row in batch if kind == "prediction"]
                    requests = [row for kind, row in batch if kind == "serving"]
                    for row in predictions:
                        if row.get("model_id") is not None:
                            served[row["model_id"]] += 1
                    _insert_grouped(s, MLPrediction, predictions)
                    _insert_grouped(s, ModelServingLog, requests)
                    for model_id, n in served.items():
                        s.execute(
                            update(MLModel).where(MLModel.id == model_id)
                            .values(served_predictions=MLModel.served_predictions + n)
                        )
                self.written += len(batch)
                return
            except Exception:  # a locked SQLite file or a dropped connection: retry, then report
                log.exception("writing %d log rows failed (attempt %d)", len(batch), attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        self.failed_batches += 1

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
