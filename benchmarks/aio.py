"""One thread, one asyncio loop, K publishes in flight through ``LeanTransport`` (issue 14's option).

    python benchmarks/aio.py [--n 3000] [--rounds 5] [--levels 4,16,64] [--latency-ms 2] [--profile 64]

Against nginx (``start_server("nginx")``) and the latency responder (``start_latency_responder``), each
round runs, interleaved: sequential ``sdk.publish.event`` on ``lean``; the raw-socket limit (1 and 4
threads); for each K, the raw-socket client multiplexing K sockets with ``selectors`` and minipub
with K coroutines each awaiting ``sdk.publish.event_async`` in turn on one loop (``max_connections=K``).
Figures: events/s and client CPU µs per event (``time.process_time`` over the timed loop), medians
over rounds, ratios taken within each round. Prints issue 14's three comparisons for the
Publisher's design; ``--profile K`` then profiles the in-flight case against nginx (cProfile).
Nothing here is asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

from cases import KEY, LIMIT, TENANT, TOPIC, event_data, minipub_case, raw_socket_limit, timed
from latency import raw_multiplexed
from servers import start_latency_responder, start_server

SEQUENTIAL = "minipub lean, sequential"
LIMIT4 = LIMIT + ", 4 threads"
Figures = Tuple[float, float]  # events/s, CPU µs per event


def aio_label(k: int) -> str:
    return f"minipub lean-async, 1 loop, {k} in flight"


def mux_label(k: int) -> str:
    return f"raw-socket, 1 thread, selectors, {k} sockets"


#: Per in-flight case and round: the loop thread's wall time on a CPU, waiting for one, idle (shares).
SCHED: Dict[int, List[Tuple[float, float, float]]] = {}


def _schedstat() -> Tuple[float, float]:
    """This thread's (seconds on a CPU, seconds runnable but waiting for one); zeros where unknown."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            on_cpu, waiting, _ = stat.read().split()
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


def aio_in_flight(url: str, n: int, k: int, profile: cProfile.Profile | None = None) -> Figures:
    """``n`` publishes by ``k`` coroutines on one loop, each awaiting its next ``event_async`` in turn."""
    import minipub
    from minipub.transports.lean import LeanTransport

    sdk = minipub.SDK(KEY, server_url=url, transport=LeanTransport(proxy=None, max_connections=k))
    event = sdk.publish.event_async

    async def main() -> Figures:
        await asyncio.gather(*[event(tenant_id=TENANT, topic=TOPIC, data=event_data(i)) for i in range(k)])
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                await event(tenant_id=TENANT, topic=TOPIC, data=event_data(i))

        if profile is not None:
            profile.enable()
        sched, cpu, wall = _schedstat(), time.process_time(), time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(k)])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        on_cpu, waiting = (after - before for after, before in zip(_schedstat(), sched))
        SCHED.setdefault(k, []).append((on_cpu / wall, waiting / wall, max(0.0, 1 - (on_cpu + waiting) / wall)))
        if profile is not None:
            profile.disable()
        return n / wall, cpu / n * 1e6

    try:
        return asyncio.run(main())
    finally:
        sdk.close()


def fed_label(k: int) -> str:
    return f"minipub lean-async, 1 loop thread fed by the submitting thread, {k} in flight"


def aio_fed(url: str, n: int, k: int) -> Figures:
    """The Publisher's shape: the calling thread builds each request (validation, id, JSON) and
    appends it to a deque; one I/O thread runs the loop, ``k`` coroutines take requests from the
    deque and await ``sdk.send_async``; a sleeping loop is woken by ``call_soon_threadsafe``; each
    outcome completes a ``concurrent.futures.Future``; the caller waits once for all (a flush).
    Timed: first submit to last outcome."""
    import collections
    import threading
    from concurrent.futures import Future

    import minipub
    from minipub.request import build_publish_request
    from minipub.transports.lean import LeanTransport

    sdk = minipub.SDK(KEY, server_url=url, transport=LeanTransport(proxy=None, max_connections=k))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    queue: collections.deque[Tuple[Any, Future[Any]]] = collections.deque()
    idle: List[asyncio.Future[None]] = []  # the workers waiting for work (only the loop thread touches it)
    stopping: List[bool] = []
    finished = [0, k]  # outcomes so far, and how many make a flush (a Publisher's flush() waits once)
    flushed = threading.Event()
    asleep = [True]  # read by the submitter without a lock: a missed wake-up is caught by the next submit

    def wake() -> None:
        asleep[0] = False
        while idle:
            waiter = idle.pop()
            if not waiter.done():
                waiter.set_result(None)

    async def worker() -> None:
        while True:
            try:
                request, outcome = queue.popleft()
            except IndexError:
                if stopping:
                    return
                waiter = loop.create_future()
                idle.append(waiter)
                asleep[0] = True
                await waiter
                continue
            try:
                outcome.set_result(await sdk.send_async(request))
            except minipub.MinipubError as error:
                outcome.set_exception(error)
            finished[0] += 1
            if finished[0] >= finished[1]:
                flushed.set()

    def submit(i: int) -> Future[Any]:
        outcome: Future[Any] = Future()
        queue.append((build_publish_request(tenant_id=TENANT, topic=TOPIC, data=event_data(i)), outcome))
        if asleep[0]:
            asleep[0] = False
            loop.call_soon_threadsafe(wake)
        return outcome

    workers = [asyncio.run_coroutine_threadsafe(worker(), loop) for _ in range(k)]
    try:
        for warm in [submit(i) for i in range(k)]:
            warm.result(30)
        flushed.clear()
        finished[:] = [0, n]
        cpu, wall = time.process_time(), time.perf_counter()
        outcomes = [submit(i) for i in range(n)]
        flushed.wait(600)  # the caller waits once, as flush() does: not once per outcome
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        failed = [outcome for outcome in outcomes if not outcome.done() or outcome.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} outcomes missing or failed")
        return n / wall, cpu / n * 1e6
    finally:
        stopping.append(True)
        loop.call_soon_threadsafe(wake)
        for done in workers:
            done.result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        sdk.close()


def cases_for(n: int, levels: List[int], seq_n: int) -> Dict[str, Callable[[str], Figures]]:
    cases: Dict[str, Callable[[str], Figures]] = {
        SEQUENTIAL: lambda url: timed(minipub_case("lean"), url, seq_n, 1),
        LIMIT: lambda url: timed(raw_socket_limit, url, n, 1),
        LIMIT4: lambda url: timed(raw_socket_limit, url, n, 4),
    }
    for k in levels:
        cases[mux_label(k)] = lambda url, k=k: raw_multiplexed(url, n, k)  # type: ignore[misc]
        cases[aio_label(k)] = lambda url, k=k: aio_in_flight(url, n, k)  # type: ignore[misc]
        cases[fed_label(k)] = lambda url, k=k: aio_fed(url, n, k)  # type: ignore[misc]
    return cases


def run_rounds(url: str, cases: Dict[str, Callable[[str], Figures]], rounds: int) -> Dict[str, List[Figures]]:
    samples: Dict[str, List[Figures]] = {}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples.setdefault(name, []).append(cases[name](url))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return samples


def _ratio(samples: Dict[str, List[Figures]], top: str, bottom: Callable[[int], float], field: int) -> float:
    """The median over rounds of ``top``'s figure over the round's ``bottom(round)``."""
    return statistics.median(figures[field] / bottom(r) for r, figures in enumerate(samples[top]))


def _met(value: float, target: float, at_most: bool) -> str:
    return "met" if (value <= target if at_most else value >= target) else "MISSED"


def report(title: str, samples: Dict[str, List[Figures]]) -> None:
    print(f"\n{title}\n| case | events/s | CPU µs/event |\n|---|---:|---:|")
    for name, runs in samples.items():
        print(f"| {name} | {statistics.median(e for e, _ in runs):,.0f} | "
              f"{statistics.median(c for _, c in runs):,.1f} |")


def nginx_targets(samples: Dict[str, List[Figures]], levels: List[int]) -> None:
    seq, limit4 = samples[SEQUENTIAL], samples[LIMIT4]
    print("\n| nginx | CPU x sequential (target ≤ 1.2) | events/s x 4-thread raw limit (target ≥ 0.8) |"
          "\n|---|---:|---:|")
    for k in levels:
        for label in (aio_label(k), fed_label(k)):
            cpu = _ratio(samples, label, lambda r: seq[r][1], 1)
            eps = _ratio(samples, label, lambda r: limit4[r][0], 0)
            print(f"| {label} | {cpu:.2f} ({_met(cpu, 1.2, True)}) | {eps:.2f} ({_met(eps, 0.8, False)}) |")


def latency_targets(samples: Dict[str, List[Figures]], levels: List[int], latency: float) -> None:
    seq = samples[SEQUENTIAL]
    print("\n| latency | bound events/s (min(K / latency, 1e6 / sequential CPU)) | x bound (target ≥ 0.8) "
          "| x K / latency (the server's bound) |\n|---|---:|---:|---:|")
    for k in levels:
        def bound(r: int, k: int = k) -> float:
            return min(k / latency, 1e6 / seq[r][1])

        for label in (mux_label(k), aio_label(k), fed_label(k)):
            ratio = _ratio(samples, label, bound, 0)
            server = _ratio(samples, label, lambda r, k=k: k / latency, 0)  # type: ignore[misc]
            met = "" if label == mux_label(k) else f" ({_met(ratio, 0.8, False)})"
            print(f"| {label} | {statistics.median(bound(r) for r in range(len(seq))):,.0f} | {ratio:.2f}{met} "
                  f"| {server:.2f} |")


#: Where a profiled µs goes: the first matching part of the code's file path (builtins by name).
PARTS = (("asyncio/", "asyncio (loop, futures, tasks, selector transport)"),
         ("selectors", "asyncio (loop, futures, tasks, selector transport)"),
         ("transports/aio.py", "minipub transports/aio.py (pool, protocol, timer)"),
         ("transports/h11parse.py", "minipub h11parse (response parse)"),
         ("transports/", "minipub other transport code (head, header block, secret head)"),
         ("client.py", "minipub client.py (publish path, attempt)"),
         ("retry.py", "minipub retry.py (retry loop, state)"),
         ("fields.py", "minipub fields/request/encoding (validate, id, JSON)"),
         ("request.py", "minipub fields/request/encoding (validate, id, JSON)"),
         ("encoding.py", "minipub fields/request/encoding (validate, id, JSON)"),
         ("json/", "minipub fields/request/encoding (validate, id, JSON)"),
         ("uuid", "minipub fields/request/encoding (validate, id, JSON)"),
         ("response.py", "minipub response.py (classify, PublishResponse)"),
         ("models.py", "minipub response.py (classify, PublishResponse)"),
         ("method 'send'", "system calls: send"), ("method 'recv'", "system calls: recv"),
         ("method 'poll'", "system calls: poll (epoll, idle check)"),
         ("benchmarks/", "the benchmark's loop"))


def sched_table(title: str) -> None:
    """Where the loop thread's wall time went (Linux schedstat): on a CPU, waiting for one, idle."""
    print(f"\n{title}: the loop thread's wall time (medians; a thread waiting for a CPU is the machine's "
          "load)\n| K in flight | on a CPU | waiting for a CPU | idle (waiting for the server) |"
          "\n|---:|---:|---:|---:|")
    for k, runs in sorted(SCHED.items()):
        on_cpu, waiting, idle = (statistics.median(run[i] for run in runs) for i in range(3))
        print(f"| {k} | {on_cpu:.0%} | {waiting:.0%} | {idle:.0%} |")
    SCHED.clear()


def profile_case(url: str, n: int, k: int) -> None:
    """cProfile of ``k`` in flight: own time per part of the code, µs per event, and the top call sites."""
    profile = cProfile.Profile()
    aio_in_flight(url, n, k, profile)
    stats = pstats.Stats(profile)
    parts: Dict[str, float] = {}
    for (path, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path}:{name}"
        part = next((label for key, label in PARTS if key in where), "other (builtins, typing, stdlib)")
        parts[part] = parts.get(part, 0.0) + tottime
    total = sum(parts.values())
    print(f"\ncProfile, {k} in flight against nginx, {n} events: own time by part, µs per event under the "
          f"profiler ({total / n * 1e6:.1f} in all; the profiler inflates call-heavy code)\n| part | µs/event | share |"
          "\n|---|---:|---:|")
    for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"| {part} | {seconds / n * 1e6:.1f} | {seconds / total:.0%} |")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--levels", default="4,16,64")
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--profile", type=int, default=0, help="profile K in flight against nginx (0: no profile)")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(k) for k in args.levels.split(",")]
    with start_server("nginx") as (url, served_by):
        print(f"nginx: {served_by} at {url}; n={args.n}, rounds={args.rounds}", file=sys.stderr)
        nginx = run_rounds(url, cases_for(args.n, levels, args.n), args.rounds)
        report(f"Against {served_by}", nginx)
        nginx_targets(nginx, levels)
        sched_table("nginx")
        if args.profile:
            profile_case(url, args.n, args.profile)
    if not args.skip_latency:
        with start_latency_responder(args.latency_ms) as (url, served_by, _):
            print(f"latency responder: {served_by}", file=sys.stderr)
            cases = cases_for(args.n, levels, max(20, min(args.n, 500)))
            del cases[LIMIT], cases[LIMIT4]
            latency = run_rounds(url, cases, args.rounds)
            report(f"Against the {served_by}", latency)
            latency_targets(latency, levels, args.latency_ms / 1000)
            sched_table("latency responder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
