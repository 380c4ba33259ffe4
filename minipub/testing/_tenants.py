"""Tenants and destinations as Outpost keeps them, and which destinations an event matches.

Matching (Outpost's tenant store): a destination matches when it is enabled and its topics match the
event's topic. An event without a topic, or with topic ``"*"``, matches every topic; a destination
with topics ``["*"]`` matches every event; otherwise a topic must be listed (``*`` inside a listed
topic is a wildcard, as with Outpost's ``TOPICS_ALLOW_WILDCARDS``). With a ``destination_id`` only
that destination of the tenant is tried. Destination filters are not modelled.

Not thread-safe: the server calls it under its lock.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["Destination", "Tenant", "TenantStore", "now_text", "topic_matches"]


def now_text() -> str:
    """The current UTC time as Outpost writes it (RFC 3339 with nanoseconds)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def _pattern(pattern: str, topic: str) -> bool:
    """Outpost's matchTopicPattern: ``*`` stands for any run of characters."""
    if pattern == topic:
        return True
    if "*" not in pattern:
        return False
    p = t = 0
    star, star_t = -1, 0
    while t < len(topic):
        if p < len(pattern) and pattern[p] == topic[t]:
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, star_t = p, t
            p += 1
        elif star != -1:
            p = star + 1
            star_t += 1
            t = star_t
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def topic_matches(topics: Sequence[str], topic: str) -> bool:
    """Whether a destination subscribed to ``topics`` takes an event with ``topic``."""
    if topic in ("", "*") or list(topics) == ["*"]:
        return True
    return any(_pattern(p, topic) for p in topics)


@dataclass
class Destination:
    """One destination of a tenant (only the webhook type is modelled)."""

    id: str
    tenant_id: str
    topics: List[str]
    url: str = ""
    type: str = "webhook"
    disabled: bool = False
    created_at: str = field(default_factory=now_text)
    secret: str = field(default_factory=lambda: "whsec_" + secrets.token_hex(32))

    def matches(self, topic: str) -> bool:
        return not self.disabled and topic_matches(self.topics, topic)

    def view(self) -> Dict[str, Any]:
        """The JSON Outpost answers for a destination."""
        return {
            "id": self.id, "tenant_id": self.tenant_id, "type": self.type, "topics": list(self.topics),
            "config": {"url": self.url}, "credentials": {"secret": self.secret},
            "created_at": self.created_at, "updated_at": self.created_at,
            "disabled_at": self.created_at if self.disabled else None, "target": self.url,
        }


@dataclass
class Tenant:
    id: str
    destinations: Dict[str, Destination] = field(default_factory=dict)
    created_at: str = field(default_factory=now_text)
    updated_at: str = ""

    def view(self) -> Dict[str, Any]:
        """The JSON Outpost answers for a tenant (``topics``: what its destinations subscribe to)."""
        topics = sorted({t for d in self.destinations.values() for t in d.topics})
        return {"id": self.id, "destinations_count": len(self.destinations),
                "topics": ["*"] if "*" in topics else topics,
                "created_at": self.created_at, "updated_at": self.updated_at or self.created_at}


class TenantStore:
    """Tenants by id, and the tenant-agnostic destinations of the embedded server's simple mode."""

    def __init__(self, shared: Sequence[str] = ()) -> None:
        self.shared: List[str] = list(shared)
        self.tenants: Dict[str, Tenant] = {}

    def clear(self) -> None:
        """Forget every tenant and its destinations (the shared destinations stay)."""
        self.tenants.clear()

    def upsert(self, tenant_id: str) -> bool:
        """Create the tenant (True) or touch it (False)."""
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            self.tenants[tenant_id] = Tenant(tenant_id)
            return True
        tenant.updated_at = now_text()
        return False

    def add_destination(self, tenant_id: str, topics: Sequence[str], url: str = "",
                        destination_id: Optional[str] = None, disabled: bool = False) -> Destination:
        tenant = self.tenants[tenant_id]
        destination = Destination(destination_id or str(uuid.uuid4()), tenant_id, list(topics), url,
                                  disabled=disabled)
        tenant.destinations[destination.id] = destination
        return destination

    def match(self, tenant_id: str, topic: str, destination_id: str) -> List[str]:
        """The ids of the destinations an event matches, in creation order (shared ones first)."""
        tenant = self.tenants.get(tenant_id)
        own = list(tenant.destinations.values()) if tenant is not None else []
        if destination_id:
            shared = [destination_id] if destination_id in self.shared else []
            return shared + [d.id for d in own if d.id == destination_id and d.matches(topic)]
        return self.shared + [d.id for d in own if d.matches(topic)]
