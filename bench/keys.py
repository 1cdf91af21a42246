"""Stable short hashes of JSON payloads: the keys of transfers and sweep cells."""

from __future__ import annotations

import hashlib
import json


def stable_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
