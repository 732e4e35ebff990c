"""The configuration of the session's image registry (Debian's ``docker-registry``, the
distribution registry 2.x): text in, text out.

JSON is YAML, so the registry reads it as its ``config.yml`` with no YAML library here.
"""

from __future__ import annotations

import json


def registry_config(storage: str, address: str, port: int, secret: str) -> str:
    """A registry storing its blobs under ``storage`` and listening on ``address:port``
    only (never every interface): plain HTTP, no authentication, nothing deleted, quiet
    (warnings only, no access log), and no periodic storage health check or upload
    purging, which would only cost a short-lived registry time."""
    config = {
        "version": "0.1",
        "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": storage},
            "delete": {"enabled": False},
            "maintenance": {"uploadpurging": {"enabled": False}},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"{address}:{port}",
            # Given, so that the registry does not warn about making one up at each start.
            "secret": secret,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "health": {"storagedriver": {"enabled": False}},
    }
    return json.dumps(config, indent=2) + "\n"
