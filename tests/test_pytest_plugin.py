"""The pytest plugin's fixtures, used the way a user's test suite uses them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import pytest

import minipub
from minipub import SDK
from minipub.testing import OutpostServer

ROOT = Path(__file__).resolve().parents[1]


# "User code": an application function that publishes through a client it is given.
def sign_up(sdk: SDK, email: str) -> str:
    response = sdk.publish.event(tenant_id="acme", topic="user.created", data={"email": email},
                                 metadata={"source": "signup"})
    return response.id


def test_minipub_sdk_publishes_to_outpost_server(minipub_sdk: SDK, outpost_server: OutpostServer) -> None:
    event_id = sign_up(minipub_sdk, "ada@example.com")
    [event] = outpost_server.events
    assert event["id"] == event_id
    assert (event["topic"], event["data"], event["metadata"]) == ("user.created", {"email": "ada@example.com"},
                                                                   {"source": "signup"})


def test_faults_are_programmable_and_retried_quickly(minipub_sdk: SDK, outpost_server: OutpostServer) -> None:
    outpost_server.fail_next(503)
    outpost_server.drop_next(accepted=True)  # the acknowledgement is lost: the retry is a duplicate
    event_id = sign_up(minipub_sdk, "bob@example.com")
    assert [e["id"] for e in outpost_server.events] == [event_id]
    assert len(outpost_server.requests) == 3
    outpost_server.fail_next(422)
    with pytest.raises(minipub.BadRequestError):
        sign_up(minipub_sdk, "eve@example.com")


def test_minipub_env_points_the_shared_client_at_the_server(minipub_env: OutpostServer) -> None:
    response = minipub.publish("order.shipped", {"order": 42}, tenant_id="acme")
    assert [e["id"] for e in minipub_env.events] == [response.id]
    assert os.environ["OUTPOST_API_BASE_URL"] == minipub_env.url


def test_each_test_gets_a_fresh_server(outpost_server: OutpostServer) -> None:
    assert outpost_server.events == [] and outpost_server.fail_rate == 0.0


def test_default_destination_matches_every_tenant_and_tenants_can_be_added(minipub_sdk: SDK,
                                                                          outpost_server: OutpostServer) -> None:
    # the simple default: one tenant-agnostic destination that matches everything
    for tenant in ("acme", "globex"):
        response = minipub_sdk.publish.event(tenant_id=tenant, topic="any.topic", data={})
        assert list(response.destination_ids) == ["des_embedded"]
    # Outpost's own model on top: a tenant's destinations match its events by topic
    orders = outpost_server.add_destination("acme", ["order.paid"])
    response = minipub_sdk.publish.event(tenant_id="acme", topic="order.paid", data={})
    assert list(response.destination_ids) == ["des_embedded", orders]


USER_TEST = '''
import minipub


def notify(user_id):  # the application's code
    return minipub.publish("user.created", {"user_id": user_id}, tenant_id="acme").id


def test_notify(minipub_env):
    minipub_env.fail_next(503)  # retried
    event_id = notify("usr_1")
    assert [e["id"] for e in minipub_env.events] == [event_id]


def test_with_sdk(minipub_sdk, outpost_server):
    minipub_sdk.publish.event(tenant_id="acme", topic="t", data={})
    assert len(outpost_server.events) == 1
'''


def test_a_user_project_gets_the_fixtures(tmp_path: Path) -> None:
    """A project with no conftest: the fixtures come from the plugin (its entry point when minipub
    is installed, ``-p`` otherwise: with the plugin already registered, ``-p`` is a no-op)."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    env: Dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "minipub.testing.pytest_plugin", "-p", "no:cacheprovider",
         "test_user.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


SHARED_CONFTEST = '''
import pytest


@pytest.fixture(scope="session")
def outpost_server_options():
    return {"api_key": "sk_user_suite_key", "processing_wait": 0.2}
'''

SHARED_TEST = '''
from minipub import SDK

SEEN = []


def test_first(outpost_shared_server):
    SEEN.append(outpost_shared_server.port)
    assert outpost_shared_server.api_key == "sk_user_suite_key"
    with SDK("sk_user_suite_key", server_url=outpost_shared_server.url, proxy=None) as sdk:
        sdk.publish.event(tenant_id="acme", topic="t", data={})
    outpost_shared_server.add_destination("acme")
    outpost_shared_server.fail_next(503, times=5)
    outpost_shared_server.api_key = "rotated"


def test_second(outpost_shared_server, outpost_session_server):
    assert outpost_shared_server is outpost_session_server and SEEN == [outpost_shared_server.port]
    assert outpost_shared_server.events == [] and outpost_shared_server.requests == []
    assert outpost_shared_server.api_key == "sk_user_suite_key"
    with SDK("sk_user_suite_key", server_url=outpost_shared_server.url, proxy=None) as sdk:
        response = sdk.publish.event(tenant_id="acme", topic="t", data={})  # no fault left, no tenant
    assert list(response.destination_ids) == ["des_embedded"]
'''


def test_one_server_for_the_session_reset_for_each_test(tmp_path: Path) -> None:
    """``outpost_shared_server``: the same server in every test, reset in between; a conftest chooses
    its options by redefining ``outpost_server_options``."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(SHARED_CONFTEST))
    (tmp_path / "test_shared.py").write_text(textwrap.dedent(SHARED_TEST))
    env: Dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "minipub.testing.pytest_plugin", "-p", "no:cacheprovider",
         "-p", "no:randomly", "test_shared.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_import_minipub_does_not_import_the_plugin() -> None:
    script = "import sys, minipub; print('minipub.testing.pytest_plugin' in sys.modules, 'pytest' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr
