"""Outpost's tenant tokens: HS256 JWTs with issuer ``outpost`` and the tenant as subject, valid 24 h."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Optional

__all__ = ["issue", "tenant_of"]

_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret: bytes, tenant_id: str) -> str:
    now = int(time.time())
    claims = {"exp": now + 86_400, "iat": now, "iss": "outpost", "sub": tenant_id}
    head = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims, separators=(",", ":")).encode())
    return head + "." + _b64(hmac.new(secret, head.encode("ascii"), hashlib.sha256).digest())


def tenant_of(secret: bytes, token: str) -> Optional[str]:
    """The tenant a valid token names ('' when it names none); None when the token is not valid."""
    try:
        head, body, signature = token.split(".")
        header: Dict[str, Any] = json.loads(_unb64(head))
        claims: Dict[str, Any] = json.loads(_unb64(body))
        digest = _ALGORITHMS[header["alg"]]
        expected = hmac.new(secret, (head + "." + body).encode("ascii"), digest).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if claims.get("iss") != "outpost" or not isinstance(claims.get("sub", ""), str):
            return None
        if (exp is not None and float(exp) <= time.time()) or (nbf is not None and float(nbf) > time.time()):
            return None
        return str(claims.get("sub", ""))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        return None
