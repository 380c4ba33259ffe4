"""Publishing through Outpost's RabbitMQ queue beside HTTP to the same real Outpost (prints figures, asserts nothing).

    bash tests/real/outpost.sh start      # then, from the repository root:
    python plugins/minipub-rabbitmq/benchmarks/queue_vs_http.py [--n 2000] [--rounds 3]

Each round publishes ``n`` events with each case, interleaved, to one tenant with a webhook
destination (a local receiver answering 200), and measures what the client sees: events/s until
the last publish returned (HTTP: Outpost's 202; queue: the broker's confirm) and the client
process's CPU per event (user+sys over the loop); and, end to end, events/s from the first
publish until the receiver had every event. Medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[3]
sys.path.append(str(ROOT))
os.environ["MINIPUB_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from minipub_rabbitmq import RabbitMQTransport  # noqa: E402

from minipub import SDK  # noqa: E402
from tests.real.conftest import WebhookReceiver, _find  # noqa: E402


def run(sdk: SDK, tenant: str, n: int, threads: int, receiver: WebhookReceiver) -> Tuple[float, float, float]:
    """(events/s, CPU µs/event, delivered events/s) for n publishes from ``threads`` threads."""
    per = n // threads
    ids: List[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [sdk.publish.event(tenant_id=tenant, topic="bench", data={"i": i, "payload": "x" * 64}).id
                for i in range(per)]
        with lock:
            ids.extend(mine)

    cpu, wall = time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed, cpu = time.perf_counter() - wall, time.process_time() - cpu
    missing = receiver.deliveries.wait_for(set(ids), timeout=300)
    delivered = time.perf_counter() - wall
    if missing:
        sys.exit(f"{len(missing)} events were not delivered within 300 s")
    return len(ids) / elapsed, cpu / len(ids) * 1e6, len(ids) / delivered


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = _find()
    if server is None:
        sys.exit("no real Outpost: bash tests/real/outpost.sh start")
    receiver = WebhookReceiver()
    tenant = server.create_tenant()
    server.create_webhook(tenant, receiver.url)
    http = SDK(server.api_key, server_url=server.base_url)
    queue = SDK(transport=RabbitMQTransport(server.amqp_url, server.publish_queue))
    cases: Dict[str, Callable[[int], Tuple[float, float, float]]] = {
        "HTTP (lean), 1 thread": lambda n: run(http, tenant, n, 1, receiver),
        "queue (rabbitmq), 1 thread": lambda n: run(queue, tenant, n, 1, receiver),
        "HTTP (lean), 4 threads": lambda n: run(http, tenant, n, 4, receiver),
        "queue (rabbitmq), 4 threads": lambda n: run(queue, tenant, n, 4, receiver),
    }
    results: Dict[str, List[Tuple[float, float, float]]] = {name: [] for name in cases}
    for number in range(args.rounds):
        for name, case in cases.items():
            results[name].append(case(args.n))
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
    http.close()
    queue.close()
    print(f"{args.n} events per case, {args.rounds} rounds (medians), Outpost at {server.base_url}")
    print("| case | published events/s | client CPU µs/event | delivered events/s (first publish to last webhook) |")
    print("|---|---:|---:|---:|")
    for name, rows in results.items():
        figures = [statistics.median(r[k] for r in rows) for k in range(3)]
        print(f"| {name} | {figures[0]:,.0f} | {figures[1]:,.0f} | {figures[2]:,.0f} |")
    receiver.close()


if __name__ == "__main__":
    main()
