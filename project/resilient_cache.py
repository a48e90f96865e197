"""The shared cache, or this process's own memory while the shared one is down.

With CACHE_URL the default cache is Redis.  Sign-in throttling and the
suggestion debounce must not turn a Redis outage into a 500 for everyone, and
must not simply stop counting either: while Redis is unreachable their counts
live in a per-process memory cache (so a guesser is still slowed, at worst by
the number of web processes more), and go back to Redis once it answers again.
After a failure Redis is not asked again for RETRY_AFTER_S, so an outage
costs each request nothing rather than a connection timeout.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0


def _outage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from redis.exceptions import RedisError

        errors.append(RedisError)
    except ImportError:  # no Redis client installed: the cache is local memory anyway
        pass
    return tuple(errors)


OUTAGE_ERRORS = _outage_errors()


class ResilientCache:
    """The methods of Django's cache used for counters, with the fallback above."""

    def __init__(self) -> None:
        self._local = LocMemCache("simlabel-fallback", {"OPTIONS": {"MAX_ENTRIES": 50_000}})
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _call(self, method: str, *args, **kwargs):
        if time.monotonic() >= self._down_until:
            try:
                result = getattr(cache, method)(*args, **kwargs)
            except OUTAGE_ERRORS:
                with self._lock:
                    already_down = self._down_until > 0
                    self._down_until = time.monotonic() + RETRY_AFTER_S
                if not already_down:
                    log.warning(
                        "shared cache unreachable: counting in this process's memory until it is back", exc_info=True
                    )
            else:
                if self._down_until:
                    with self._lock:
                        self._down_until = 0.0
                    log.warning("shared cache reachable again")
                return result
        return getattr(self._local, method)(*args, **kwargs)

    def get(self, key, default=None):
        return self._call("get", key, default)

    def get_many(self, keys):
        return self._call("get_many", keys)

    def set(self, key, value, timeout):
        return self._call("set", key, value, timeout=timeout)

    def add(self, key, value, timeout):
        return self._call("add", key, value, timeout=timeout)

    def incr(self, key, delta=1):
        return self._call("incr", key, delta)

    def delete(self, key):
        return self._call("delete", key)


resilient_cache = ResilientCache()
