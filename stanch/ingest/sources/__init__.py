"""One module per alert source; each exposes ``normalize(payload, received_at) -> list[Alert]``."""
