"""The clients the benchmarks compare, and the timed loop they share.

A case opens a ``Session`` for one server (``url``, the admin ``key``, the ``tenant`` its events go
to); ``session.publisher()`` hands each thread its own publish function, ``publish(i)`` sends event
``i``. ``timed`` runs ``n`` publishes over some threads and returns events/s and CPU µs per event.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from uuid import uuid4

KEY = "sk_bench_" + "k" * 24
TENANT = "acme"
TOPIC = "user.created"
THREADS = 4
LIMIT, FLOOR = "raw-socket limit", "http.client floor"

Publish = Callable[[int], Any]


def event_data(i: int) -> Dict[str, Any]:
    return {"user_id": "usr_123", "plan": "pro", "n": i}


class Session:
    """What a case opened: ``publisher()`` once per thread, ``close()`` at the end."""

    def __init__(self, publisher: Callable[[], Publish], close: Callable[[], None] = lambda: None) -> None:
        self.publisher = publisher
        self.close = close


OpenSession = Callable[..., Session]  # (url, key=KEY, tenant=TENANT) -> Session


def raw_socket_limit(url: str, key: str = KEY, tenant: str = TENANT, same_event: bool = False,
                     timeout: Optional[float] = None) -> Session:
    """One socket per thread, a prebuilt request head, a minimal Content-Length response parse.

    ``same_event``: the body minipub sends (a client-side UUID4 ``id`` and ``eligible_for_retry``), so
    that a real server does the same work for both; else the smallest body. ``timeout``: a bound on
    each socket operation (a server that stalls), as minipub's per-attempt timeout; off for the limit.
    """
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3] + "/publish"
    prefix = (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {key}\r\n"
              "Content-Type: application/json\r\nContent-Length: ").encode()
    sockets: List[socket.socket] = []

    def publisher() -> Publish:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets.append(sock)
        dumps, loads, recv, sendall = json.dumps, json.loads, sock.recv, sock.sendall

        def publish(i: int) -> Any:
            if same_event:
                body = dumps({"id": str(uuid4()), "tenant_id": tenant, "topic": TOPIC, "eligible_for_retry": True,
                              "data": event_data(i)}).encode()
            else:
                body = dumps({"tenant_id": tenant, "topic": TOPIC, "data": event_data(i)}).encode()
            sendall(prefix + str(len(body)).encode() + b"\r\n\r\n" + body)
            buf = recv(65536)
            while b"\r\n\r\n" not in buf:
                buf += recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            at = head.lower().index(b"content-length:") + 15
            length = int(head[at:head.find(b"\r", at) if head.find(b"\r", at) > 0 else len(head)])
            while len(rest) < length:
                rest += recv(65536)
            if head[9:12] != b"202":
                raise RuntimeError(head[:40])
            return loads(rest)

        return publish

    def close() -> None:
        for sock in sockets:
            sock.close()

    return Session(publisher, close)


def http_client_floor(url: str, key: str = KEY, tenant: str = TENANT) -> Session:
    """One persistent ``http.client.HTTPConnection`` per thread, ``json.dumps``/``json.loads``."""
    import http.client

    host_port = url.split("/")[2]
    path = "/" + url.split("/", 3)[3] + "/publish"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conns: List[Any] = []

    def publisher() -> Publish:
        conn = http.client.HTTPConnection(host_port)
        conns.append(conn)

        def publish(i: int) -> Any:
            body = json.dumps({"tenant_id": tenant, "topic": TOPIC, "data": event_data(i)})
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            data = json.loads(response.read())
            if response.status != 202:
                raise RuntimeError(response.status)
            return data

        return publish

    def close() -> None:
        for conn in conns:
            conn.close()

    return Session(publisher, close)


def minipub_case(transport: Optional[str] = None) -> OpenSession:
    """``minipub.SDK(transport=...).publish.event``; ``None``: the default transport."""

    def open_session(url: str, key: str = KEY, tenant: str = TENANT) -> Session:
        import minipub

        options: Dict[str, Any] = {} if transport is None else {"transport": transport}
        sdk = minipub.SDK(key, server_url=url, proxy=None, **options)
        event = sdk.publish.event

        def publisher() -> Publish:
            return lambda i: event(tenant_id=tenant, topic=TOPIC, data=event_data(i))

        return Session(publisher, sdk.close)

    open_session.__doc__ = f"minipub.SDK(transport={transport!r}).publish.event"
    return open_session


def outpost_sdk_case(url: str, key: str = KEY, tenant: str = TENANT) -> Session:
    """The official generated SDK (httpx + pydantic), one client shared by the threads."""
    from outpost_sdk import Outpost

    client = Outpost(api_key=key, server_url=url)

    def publisher() -> Publish:
        return lambda i: client.publish(request={"tenant_id": tenant, "topic": TOPIC, "data": event_data(i)})

    return Session(publisher, lambda: client.__exit__(None, None, None))  # type: ignore[no-untyped-call]


def plugin_case(url: str, key: str = KEY, tenant: str = TENANT) -> Session:
    """HOOK "plugins": minipub with one (no-op) observability plugin registered through pluggy."""
    import minipub
    from minipub.hookspecs import hookimpl

    class Observer:
        @hookimpl(wrapper=True)  # type: ignore[untyped-decorator]
        def minipub_publish(self) -> Any:
            return (yield)

        @hookimpl(wrapper=True)  # type: ignore[untyped-decorator]
        def minipub_attempt(self) -> Any:
            return (yield)

    sdk = minipub.SDK(key, server_url=url, proxy=None, plugins=[Observer()])
    event = sdk.publish.event
    return Session(lambda: lambda i: event(tenant_id=tenant, topic=TOPIC, data=event_data(i)), sdk.close)


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def default_loop() -> str:
    """The event loop the Publisher runs by default here: uvloop when it is installed."""
    return "uvloop" if have("uvloop") else "asyncio"


def publisher_available() -> bool:
    """HOOK: the background Publisher (another branch) lights up the publisher/outbox rows once merged."""
    try:
        import minipub

        return getattr(minipub, "Publisher", None) is not None
    except ImportError:  # pragma: no cover
        return False


def all_cases(with_outpost: bool) -> Dict[str, OpenSession]:
    from minipub.transports import BUILTIN_TRANSPORTS, DEFAULT_TRANSPORT

    cases: Dict[str, OpenSession] = {LIMIT: raw_socket_limit, FLOOR: http_client_floor}
    for name in sorted(BUILTIN_TRANSPORTS, key=lambda n: n != DEFAULT_TRANSPORT):
        label = f"minipub {name}" + (" (default)" if name == DEFAULT_TRANSPORT else "")
        cases[label] = minipub_case(name)
    if have("minipub.hookspecs") and have("pluggy"):
        cases["minipub + 1 observability plugin"] = plugin_case
    if with_outpost and have("outpost_sdk"):
        from servers import sdk_url  # the local server's path that answers with an id, as outpost-sdk requires

        cases["outpost-sdk"] = lambda url, **kw: outpost_sdk_case(sdk_url(url), **kw)
    return cases


# -- timing ------------------------------------------------------------------------------------

WARMUP = 3  # publishes per thread before the timed loop (connect, first-call costs)


def timed(open_session: OpenSession, url: str, n: int, threads: int, *, key: str = KEY, tenant: str = TENANT,
          after_warmup: Callable[[int], None] = lambda warm: None) -> Tuple[float, float]:
    """(events/s, client CPU us per event) for ``n`` publishes over ``threads`` threads.

    ``after_warmup(count)`` runs between the warm-up publishes (``count`` of them) and the timed loop.
    """
    session = open_session(url, key=key, tenant=tenant)
    try:
        publishers = [session.publisher() for _ in range(threads)]
        for publish in publishers:  # connect and warm up outside the timed loop
            for i in range(WARMUP):
                publish(i)
        after_warmup(WARMUP * threads)
        errors: List[BaseException] = []

        def work(publish: Publish, count: int) -> None:
            try:
                for i in range(count):
                    publish(i)
            except BaseException as exc:  # reported after the loop
                errors.append(exc)

        cpu, wall = time.process_time(), time.perf_counter()
        if threads == 1:
            work(publishers[0], n)
        else:
            workers = [threading.Thread(target=work, args=(p, n // threads)) for p in publishers]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(600)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if errors:
            raise errors[0]
        done = n if threads == 1 else n // threads * threads
        return done / wall, cpu / done * 1e6
    finally:
        session.close()


class CommitLog:
    """The outbox's group commits during a timed loop: how long each took and what it carried."""

    def __init__(self) -> None:
        self.commits: List[Tuple[float, int, int, int]] = []  # (seconds, inserts, outcomes, claimed)
        self.on = False

    def wrap(self, outbox: Any) -> None:
        """Time ``outbox.transact`` (one transaction, one commit) from the outside; calls that found
        nothing to do (no insert, outcome or claim) are not commits and are not counted."""
        transact, clock = outbox.transact, time.perf_counter

        def timed_transact(inserts: Any, outcomes: Any, **options: Any) -> Any:
            start = clock()
            row_ids, claimed = transact(inserts, outcomes, **options)
            if self.on and (inserts or outcomes or claimed):
                self.commits.append((clock() - start, len(inserts), len(outcomes), len(claimed)))
            return row_ids, claimed

        outbox.transact = timed_transact

    def summary(self) -> Dict[str, float]:
        if not self.commits:
            return {}
        count = len(self.commits)
        return {"commits": count, "ms_per_commit": sum(c[0] for c in self.commits) / count * 1000,
                "inserts_per_commit": sum(c[1] for c in self.commits) / count,
                "outcomes_per_commit": sum(c[2] for c in self.commits) / count,
                "claims_per_commit": sum(c[3] for c in self.commits) / count}


def publisher_timed(url: str, n: int, *, workers: int = THREADS, submitters: int = THREADS, key: str = KEY,
                    tenant: str = TENANT, outbox: Optional[str] = None, synchronous: str = "FULL",
                    after_warmup: Callable[[int], None] = lambda warm: None,
                    commit_log: Optional[CommitLog] = None, engine: str = "auto") -> Tuple[float, float]:
    """(events/s, CPU us per event) of the background ``Publisher``: submit ``n`` from ``submitters``
    threads, then ``flush``. ``workers`` warm-up events (one per worker's connection) go first.
    With an outbox, ``commit_log`` records its group commits during the timed loop. ``engine``: the
    Publisher's (auto: the event loop on the default transport, uvloop's when installed; "asyncio":
    asyncio's own loop; "threads")."""
    import minipub

    sdk = minipub.SDK(key, server_url=url, proxy=None)
    options: Dict[str, Any] = {"workers": workers, "max_queue": max(10_000, n + workers)}
    if engine == "asyncio":  # the event loop engine on asyncio's own loop (the default is uvloop's when installed)
        import asyncio

        options["loop_factory"] = asyncio.new_event_loop
    elif engine != "auto":
        options["engine"] = engine
    if outbox is not None:
        options.update(outbox=outbox, synchronous=synchronous)
    publisher = minipub.Publisher(sdk, **options)
    if commit_log is not None and publisher.outbox is not None:
        commit_log.wrap(publisher.outbox)
    try:
        for i in range(workers):
            publisher.submit(TOPIC, event_data(i), tenant_id=tenant)
        publisher.flush(timeout=120)
        after_warmup(workers)
        if commit_log is not None:
            commit_log.on = True
        per_thread = n // submitters

        def submit(count: int) -> None:
            for i in range(count):
                publisher.submit(TOPIC, event_data(i), tenant_id=tenant)

        cpu, wall = time.process_time(), time.perf_counter()
        if submitters == 1:
            submit(per_thread)
        else:
            threads = [threading.Thread(target=submit, args=(per_thread,)) for _ in range(submitters)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(600)
        if not publisher.flush(timeout=600):
            raise RuntimeError("the Publisher did not settle its events within 600 s")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if commit_log is not None:
            commit_log.on = False
        failed = publisher.stats().failed
        if failed:
            raise RuntimeError(f"the Publisher failed {failed} events for good")
        done = per_thread * submitters
        return done / wall, cpu / done * 1e6
    finally:
        publisher.close()
        sdk.close()
