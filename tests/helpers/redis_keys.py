"""Cleaning up after tests that use Redis: only their own keys."""

from __future__ import annotations


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete the keys starting with `prefix` (no glob characters in it); how many there were."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()
