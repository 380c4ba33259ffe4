"""A child process for the crash scenario: ``python -m tests.outbox_child MODE URL KEY OUTBOX [COUNT]``.

``produce``: submit COUNT events (``data.seq`` = 0..COUNT-1) through an outbox-backed Publisher,
printing ``ok SEQ ID`` once each submit has returned (the event is on disk), then flush.
``drain``: open the same outbox, deliver what is left, print the stats as JSON, exit 0 if all settled.

Environment (all optional): ``CHILD_LEASE`` (seconds, default 2), ``CHILD_TIMEOUT_MS`` (per attempt,
default 500), ``CHILD_SWEEP`` (the outbox's dead-owner sweep interval, seconds), ``CHILD_NO_FCNTL=1``
(run as on a platform without ``fcntl``: liveness unknown, leases alone decide), ``CHILD_HOLD=1``
(``produce`` stays alive and idle after ``done``, until killed), ``CHILD_KILL_AFTER=N`` (``produce``
sends itself SIGKILL right after the N-th submit returned: a crash at a known point, however fast
the delivery keeps up).
"""

from __future__ import annotations

import json
import os
import signal
import sys

if os.environ.get("CHILD_NO_FCNTL") == "1":
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # ``import fcntl`` now raises ImportError

import minipub.background.store as outbox_module
from minipub import SDK, BackoffStrategy, Publisher, RetryBudget, RetryConfig


def main(argv: list) -> int:
    mode, url, key, path = argv[:4]
    if "CHILD_SWEEP" in os.environ:
        outbox_module.SWEEP_INTERVAL = float(os.environ["CHILD_SWEEP"])
    retry = RetryConfig("backoff", BackoffStrategy(5, 50, 2.0, 3_000), True, max_attempts=4)
    sdk = SDK(key, server_url=url, timeout_ms=float(os.environ.get("CHILD_TIMEOUT_MS", "500")), retry_config=retry,
              retry_budget=RetryBudget(100, 1.0))
    publisher = Publisher(sdk, workers=4, outbox=path, lease_seconds=float(os.environ.get("CHILD_LEASE", "2.0")),
                          backoff_initial=0.02, backoff_cap=0.2, poll_interval=0.1)
    if mode == "produce":
        for seq in range(int(argv[4])):
            event_id = publisher.submit("crash.test", {"seq": seq}, tenant_id="acme")
            print(f"ok {seq} {event_id}", flush=True)
            if seq + 1 == int(os.environ.get("CHILD_KILL_AFTER", "0")):
                os.kill(os.getpid(), signal.SIGKILL)
        publisher.flush(60)
        print("done", flush=True)
        if os.environ.get("CHILD_HOLD") == "1":  # stay alive and idle (the lock held) until killed, 60 s at most
            import time

            time.sleep(60)
        return 0
    settled = publisher.flush(60)
    stats = publisher.stats()
    publisher.close(5)
    print(json.dumps({"settled": settled, "delivered": stats.delivered, "duplicates": stats.duplicates,
                      "retried": stats.retried, "failed": stats.failed}), flush=True)
    return 0 if settled else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
