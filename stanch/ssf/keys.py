"""Stanch's SET signing keys: RSA 2048 (RS256), kept under ``<state_dir>/ssf/keys``.

One key signs; after :meth:`KeyStore.rotate` the previous key stays in the JWKS for
``retain_seconds`` (long enough for SETs it signed to be delivered, polled and checked),
then drops out. Private keys are files readable by the owner only; the JWKS carries only
public parts.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey


class KeyStore:
    def __init__(self, directory: Path, *, retain_seconds: int = 7 * 24 * 3600) -> None:
        self.dir = directory
        self.retain_seconds = retain_seconds
        self._lock = threading.Lock()
        # Loaded keys by kid. Loading a PEM checks the RSA key (tens of ms of CPU): once per
        # key per process, not per SET. The index is still read every time, so a key
        # `stanch ssf rotate-key` made in another process is picked up at once.
        self._loaded: dict[str, rsa.RSAPrivateKey] = {}

    def _private(self, kid: str) -> rsa.RSAPrivateKey:
        private = self._loaded.get(kid)
        if private is None:
            loaded = serialization.load_pem_private_key(
                (self.dir / f"{kid}.pem").read_bytes(), password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            self._loaded[kid] = private = loaded
        return private

    @property
    def _index(self) -> Path:
        return self.dir / "keys.json"

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self._index.read_text())
        except FileNotFoundError:
            return []
        return list(data.get("keys", []))

    def _write(self, keys: list[dict[str, Any]]) -> None:
        tmp = self._index.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": keys}, indent=2))
        os.replace(tmp, self._index)

    def _new_key(self, keys: list[dict[str, Any]]) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        kid = f"stanch-{time.strftime('%Y%m%d')}-{uuid.uuid4().hex[:8]}"
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        path = self.dir / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        entry = {"kid": kid, "created": int(time.time()), "retired": None}
        keys.append(entry)
        return entry

    def signing_key(self) -> SigningKey:
        """The active key, created on first use."""
        with self._lock:
            keys = self._read()
            active = [k for k in keys if k["retired"] is None]
            if not active:
                active = [self._new_key(keys)]
                self._write(keys)
            kid = active[-1]["kid"]
        return SigningKey(kid, self._private(kid))

    def rotate(self) -> str:
        """Make a new signing key; the old one stays published for ``retain_seconds``."""
        with self._lock:
            keys = self._read()
            now = int(time.time())
            for k in keys:
                if k["retired"] is None:
                    k["retired"] = now
            kid = str(self._new_key(keys)["kid"])
            self._write(keys)
        return kid

    def published(self) -> list[dict[str, Any]]:
        """Key entries in the JWKS: the active one and recently retired ones."""
        now = time.time()
        return [k for k in self._read()
                if k["retired"] is None or now - k["retired"] < self.retain_seconds]

    def jwks(self) -> dict[str, Any]:
        self.signing_key()  # there is always one to publish
        out = []
        for entry in self.published():
            private = self._private(entry["kid"])
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
            jwk.update({"kid": entry["kid"], "use": "sig", "alg": "RS256"})
            out.append(jwk)
        return {"keys": out}
