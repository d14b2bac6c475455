"""Shared Signals (OpenID SSF 1.0, CAEP 1.0, RISC 1.0): Stanch as receiver and transmitter.

- :mod:`stanch.ssf.events` — event type URIs; what an incoming event means (category,
  severity) and which event an applied action announces;
- :mod:`stanch.ssf.set` — Security Event Tokens (RFC 8417): build, sign, validate;
- :mod:`stanch.ssf.keys` — Stanch's signing keys under the state dir, rotation, JWKS;
- :mod:`stanch.ssf.jwks` — a transmitter's JWKS, refetched once on an unknown ``kid``;
- :mod:`stanch.ssf.store` — SQLite state: streams, the SET queue, seen ``jti``s;
- :mod:`stanch.ssf.receiver` — one pushed or polled SET → validated → an Alert (or a
  verification / stream-updated event);
- :mod:`stanch.ssf.transmitter` — metadata, stream configuration, applied actions → SETs;
- :mod:`stanch.ssf.delivery` — push as a Temporal activity, the emitter loop;
- :mod:`stanch.ssf.client` — the receiver's side of stream management, and the poller.
"""
