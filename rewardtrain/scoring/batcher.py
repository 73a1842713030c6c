"""Micro-batching: requests that arrive within ``window_seconds`` of the first waiting one are scored together.

Callers (Celery tasks on a threads pool, or any threads) ``submit`` a request and wait on its future; one
scoring thread per process takes everything queued, waits up to the window for more (up to
``max_sequences`` responses), and scores each model's requests in one length-sorted pass
(``engine.score_requests``). While it runs a forward pass, new requests queue up for the next one, so under
load batches grow by themselves and the window only costs latency when the process is idle.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from rewardtrain.scoring.engine import LoadedModel, ScoringRequest, score_members, score_requests

ScoreFunction = Callable[[LoadedModel, Sequence[ScoringRequest]], list[np.ndarray]]


@dataclass
class _Item:
    loaded: LoadedModel
    request: ScoringRequest
    future: Future


class MicroBatcher:
    def __init__(
        self,
        *,
        window_seconds: float = 0.005,
        max_sequences: int = 256,
        score: ScoreFunction = score_requests,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_sequences = max_sequences
        self._score = score
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="palate-scoring", daemon=True)
        self._thread.start()
        self.batch_sizes: list[int] = []  # requests per forward pass, for tests and the benchmark

    def submit(self, loaded: LoadedModel, request: ScoringRequest) -> Future:
        future: Future = Future()
        self._queue.put(_Item(loaded, request, future))
        return future

    def score(
        self, loaded: LoadedModel, request: ScoringRequest, *, timeout: float | None = None
    ) -> np.ndarray:
        return self.submit(loaded, request).result(timeout=timeout)

    def _collect(self) -> list[_Item]:
        items = [self._queue.get()]
        sequences = len(items[0].request.responses)
        deadline = time.monotonic() + self.window_seconds
        while sequences < self.max_sequences:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            sequences += len(item.request.responses)
        return items

    def _run(self) -> None:
        while True:
            items = self._collect()
            by_model: dict[int, list[_Item]] = {}
            for item in items:
                by_model.setdefault(id(item.loaded), []).append(item)
            for group in by_model.values():
                live = [item for item in group if item.future.set_running_or_notify_cancel()]
                if not live:
                    continue
                self.batch_sizes.append(len(live))
                try:
                    results = self._score(live[0].loaded, [item.request for item in live])
                except BaseException as error:  # every waiter must hear of the failure
                    for item in live:
                        item.future.set_exception(error)
                    continue
                for item, result in zip(live, results, strict=True):
                    item.future.set_result(result)


_process_batcher: tuple[int, MicroBatcher] | None = None
_process_lock = threading.Lock()


def process_batcher(*, window_seconds: float = 0.005, max_sequences: int = 256) -> MicroBatcher:
    """The batcher of this process (a forked child gets its own: threads do not survive a fork). It answers
    each request with its members' rewards (``score_members``), from which the worker takes the score and
    the uncertainty."""
    global _process_batcher
    with _process_lock:
        if _process_batcher is None or _process_batcher[0] != os.getpid():
            batcher = MicroBatcher(
                window_seconds=window_seconds, max_sequences=max_sequences, score=score_members
            )
            _process_batcher = (os.getpid(), batcher)
        return _process_batcher[1]
