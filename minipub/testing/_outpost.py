"""The fake Outpost behind the embedded server's HTTP front: its auth middleware (admin key, tenant
tokens), the record of publish requests, and what each endpoint answers (health, topics, tenants,
destinations; publishes in ``_publish.py``).

All state is kept under one lock, ``cond``: the endpoints run on the server's handler threads.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._gojson import STRING, STRING_LIST, STRING_MAP, GoDecodeError, decode_struct
from ._jwt import issue, tenant_of
from ._publish import Publishes, PublishRules
from ._routes import Body, Params, Result, Route, empty_result, error_result, json_result
from ._tenants import Destination, TenantStore, now_text

__all__ = ["Outpost", "ReceivedRequest", "Endpoint"]

Endpoint = Callable[[Params, Body], Result]

_DESTINATION_FIELDS = {"id": STRING, "type": STRING, "topics": STRING_LIST, "config": STRING_MAP,
                       "credentials": STRING_MAP, "metadata": STRING_MAP}
_WORKERS = ("deliverymq-consumer", "http-server", "logmq-consumer", "retrymq-consumer")


@dataclass(frozen=True)
class ReceivedRequest:
    """One request received on the publish path (authorization redacted).

    ``body`` is empty for a request answered without reading its body (401, 403, 413).
    """

    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    json: Any = None
    client_port: int = 0


def _redact(value: str) -> str:
    parts = value.split(None, 1)
    return f"{parts[0]} ***" if len(parts) == 2 else "***"


class Outpost:
    """What the endpoints answer, and who may call them; ``publishes`` holds the accepted events."""

    def __init__(self, api_key: str, shared: List[str], rules: PublishRules) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.api_key = api_key
        self.topics = rules.topics
        self.stopping = threading.Event()
        self.tenants = TenantStore(shared)
        self.requests: List[ReceivedRequest] = []
        self.publishes = Publishes(self.cond, self.tenants, self.stopping, rules)
        self._jwt_secret = secrets.token_bytes(32)
        self._endpoints: Dict[str, Endpoint] = {
            "health": self._health, "topics": self._topics, "upsert_tenant": self._upsert_tenant,
            "get_tenant": self._get_tenant, "tenant_token": self._tenant_token,
            "list_destinations": self._list_destinations, "create_destination": self._create_destination,
            "get_destination": self._get_destination, "disable": self._disable, "enable": self._enable,
        }

    def set_topics(self, topics: Optional[Tuple[str, ...]]) -> None:
        """Configure other topics (as an operator changes Outpost's ``TOPICS``)."""
        with self.cond:
            self.topics = topics
            self.publishes.rules = replace(self.publishes.rules, topics=topics)

    def endpoint(self, name: str) -> Endpoint:
        return self._endpoints[name]

    def clear(self) -> None:
        """Forget events, requests, processed ids, tenants and their destinations."""
        with self.cond:
            self.publishes.clear()
            self.requests.clear()
            self.tenants.clear()

    # -- Outpost's auth middleware ----------------------------------------------------------------

    def authenticate(self, header: Optional[str], route: Route, params: Params) -> Optional[Result]:
        """None when the caller may go on, else the answer (empty 401/403, or JSON 404 for no tenant)."""
        with self.cond:
            key = self.api_key
            wanted = params.get("tenant", "")
            unknown = route.require_tenant and wanted not in self.tenants.tenants
            if not key:  # no key configured: everything is admin, as on Outpost
                return error_result(404, "tenant not found") if unknown else None
            value = (header or "").strip(" \t")
            token = value[len("Bearer "):] if value.startswith("Bearer ") else ""
            if not token:
                return empty_result(401)
            if hmac.compare_digest(token.encode("latin-1", "replace"), key.encode("utf-8")):
                return error_result(404, "tenant not found") if unknown else None
            tenant = tenant_of(self._jwt_secret, token)
            if tenant is None:
                return empty_result(401)
            if route.admin_only or (wanted and wanted != tenant):
                return empty_result(403)
            if tenant not in self.tenants.tenants:
                return empty_result(401)
            return None

    def record(self, method: str, path: str, headers: Mapping[str, str], body: bytes, client_port: int) -> None:
        """Keep a publish request, its authorization redacted."""
        stored = dict(headers)
        if "authorization" in stored:
            stored["authorization"] = _redact(stored["authorization"])
        try:
            parsed: Any = json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        with self.cond:
            self.requests.append(ReceivedRequest(method, path, stored, body, parsed, client_port))

    # -- endpoints --------------------------------------------------------------------------------

    def _health(self, params: Params, body: Body) -> Result:
        """Outpost's ``GET /healthz`` answer when every worker is healthy."""
        return json_result(200, {"status": "healthy", "timestamp": now_text(),
                                 "workers": {name: {"status": "healthy"} for name in _WORKERS}})

    def _topics(self, params: Params, body: Body) -> Result:
        return json_result(200, list(self.topics) if self.topics else None)

    def _upsert_tenant(self, params: Params, body: Body) -> Result:
        raw = body()
        if raw:
            try:
                decode_struct(raw, {"metadata": STRING_MAP})
            except GoDecodeError as error:
                return error_result(422, error.message)
        with self.cond:
            created = self.tenants.upsert(params["tenant"])
            return json_result(201 if created else 200, self.tenants.tenants[params["tenant"]].view())

    def _get_tenant(self, params: Params, body: Body) -> Result:
        with self.cond:
            return json_result(200, self.tenants.tenants[params["tenant"]].view())

    def _tenant_token(self, params: Params, body: Body) -> Result:
        tenant = params["tenant"]
        return json_result(200, {"tenant_id": tenant, "token": issue(self._jwt_secret, tenant)})

    def _list_destinations(self, params: Params, body: Body) -> Result:
        with self.cond:
            tenant = self.tenants.tenants[params["tenant"]]
            return json_result(200, [d.view() for d in tenant.destinations.values()])

    def _create_destination(self, params: Params, body: Body) -> Result:
        try:
            fields = decode_struct(body(), _DESTINATION_FIELDS)[0]
        except GoDecodeError as error:
            return error_result(422, error.message)
        missing = [f"{name} is required" for name in ("type", "topics") if not fields.get(name) and
                   (name == "type" or fields.get(name) is None)]
        if missing:
            return error_result(422, "validation error", missing)
        topics: List[str] = fields["topics"]
        if not topics or (topics != ["*"] and any("*" in t for t in topics)):
            return error_result(422, "validation failed: invalid topics")
        if fields["type"] != "webhook":
            return error_result(422, f"no provider registered for destination type: {fields['type']}")
        url = (fields.get("config") or {}).get("url", "")
        if not url:
            return error_result(422, "validation error", ["config.url is required"])
        with self.cond:
            destination = self.tenants.add_destination(params["tenant"], list(dict.fromkeys(topics)), url,
                                                       fields.get("id") or None)
            return json_result(201, destination.view())

    def _destination(self, params: Params) -> Optional[Destination]:
        return self.tenants.tenants[params["tenant"]].destinations.get(params["destination"])

    def _get_destination(self, params: Params, body: Body) -> Result:
        with self.cond:
            destination = self._destination(params)
            return json_result(200, destination.view()) if destination else error_result(404, "destination not found")

    def _disable(self, params: Params, body: Body, disabled: bool = True) -> Result:
        with self.cond:
            destination = self._destination(params)
            if destination is None:
                return error_result(404, "destination not found")
            destination.disabled = disabled
            return json_result(200, destination.view())

    def _enable(self, params: Params, body: Body) -> Result:
        return self._disable(params, body, disabled=False)
