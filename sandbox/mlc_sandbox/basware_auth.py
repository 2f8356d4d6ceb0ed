"""OAuth2 client credentials (``POST /v1/tokens``) and API-call authentication (ref §2).

Tokens look like Basware's (three base64url parts, RS256/at+jwt header, the same claims) but
are opaque to the simulator: it keeps every issued token and looks it up, so a token is
valid only while the simulator knows it, its lifetime has not run out and, when the fault
config says so, it has not yet been used for ``token_expiry_calls`` API calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .http import Request, Response

TENANT_PREFIX = "SANDBOX"  # bwcid claim: Basware's customer id, e.g. "020779-TEST1"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant (client id), the scopes it may use, and how it logged in."""

    client_id: str
    scopes: frozenset[str]
    method: str  # "bearer" or "basic"


@dataclass
class IssuedToken:
    token: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float  # wall clock, seconds since the epoch
    calls: int = 0


@dataclass
class TokenService:
    client_id: str
    client_secret: str
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    _key: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def basic_credentials(self) -> str:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return base64.b64encode(raw).decode("ascii")

    def secrets(self) -> list[str]:
        return [self.client_secret, self.basic_credentials, *self.tokens]

    # -- POST /v1/tokens ---------------------------------------------------------------------
    def issue(self, request: Request, settings: dict[str, Any], issuer: str) -> Response:
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        grant_type = (form.get("grant_type") or [""])[0]
        scope = (form.get("scope") or [""])[0]
        if not grant_type:
            return _oauth_error(400, "invalid_request", "grant_type field required")
        if not scope.strip():
            return _oauth_error(400, "invalid_request", "scope field required")
        if self._basic_client(request.headers.get("Authorization")) != self.client_id:
            return Response.json(401, {"error": "invalid_client"})
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type",
                                "Supported value(s): 'client_credentials'")
        granted = _grant(scope.split(), allowed_scopes(settings))
        if not granted:
            return _oauth_error(400, "invalid_scope",
                                "None of the requested scopes is allowed for this client")
        lifetime = int(settings["token_lifetime"])
        token = self._mint(granted, lifetime, issuer)
        self.tokens[token] = IssuedToken(token, self.client_id, frozenset(granted),
                                         time.time() + lifetime)
        return Response.json(200, {"access_token": token, "scope": " ".join(granted),
                                   "expires_in": lifetime, "token_type": "Bearer"},
                             {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _mint(self, scopes: list[str], lifetime: int, issuer: str) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "kid": "mlc-sandbox-1", "typ": "at+jwt"}
        claims = {"sub": self.client_id, "scope": " ".join(scopes), "auth_time": now,
                  "iss": issuer, "aud": "OpenAPI", "exp": now + lifetime, "iat": now,
                  "jti": str(uuid.uuid4()), "bwcid": f"{TENANT_PREFIX}-{self.client_id}"}
        signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest() * 8
        return f"{signing_input}.{_b64(signature)}"

    # -- API calls ---------------------------------------------------------------------------
    def authenticate(self, header: str | None, settings: dict[str, Any],
                     expiry_calls: int) -> Principal | None:
        """The caller behind an ``Authorization`` header, or None (-> 401)."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        if scheme.lower() == "basic":
            if self._basic_client(header) != self.client_id:
                return None
            return Principal(self.client_id, frozenset(allowed_scopes(settings)), "basic")
        if scheme.lower() != "bearer":
            return None
        issued = self.tokens.get(credentials.strip())
        if issued is None or time.time() >= issued.expires_at:
            return None
        issued.calls += 1
        if expiry_calls > 0 and issued.calls > expiry_calls:
            return None
        return Principal(issued.client_id, issued.scopes, "bearer")

    def _basic_client(self, header: str | None) -> str | None:
        scheme, _, encoded = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        matches = hmac.compare_digest(user.encode(), self.client_id.encode()) and \
            hmac.compare_digest(password.encode(), self.client_secret.encode())
        return user if matches else None


def allowed_scopes(settings: dict[str, Any]) -> list[str]:
    value = settings["allowed_scopes"]
    return value.split() if isinstance(value, str) else list(value)


def _grant(requested: list[str], allowed: list[str]) -> list[str]:
    """Requested scopes the client may have, in request order, without duplicates."""
    granted: list[str] = []
    for scope in requested:
        if scope in allowed and scope not in granted:
            granted.append(scope)
    return granted


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response.json(status, {"error": error, "error_description": description})


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def openid_configuration(base_url: str) -> dict[str, str]:
    return {"issuer": f"{base_url}/", "jwks_uri": f"{base_url}/.well-known/jwks.json"}


def jwks() -> dict[str, Any]:
    """A well-formed but unusable key set: sandbox tokens are opaque, not RS256-signed."""
    modulus = _b64(hashlib.sha512(b"mlc-sandbox-1").digest() * 4)
    return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "mlc-sandbox-1",
                      "n": modulus, "e": "AQAB"}]}
