"""Our retry policy (the client's own retries are off, so the policy is explicit and testable).

Exponential backoff with full jitter on 408/409/429/5xx, timeouts and connection errors, honouring
`Retry-After`; a whole-request deadline, so a server that never answers cannot hang a run.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

from fortifai_bench.errors import FortifaiError

RETRY_AFTER_CAP = 300.0  # seconds; a longer Retry-After is an outage, not a rate limit
# Status codes worth another try: timeout, conflict, rate limit (and every 5xx, see `retryable`).
RETRY_STATUS = frozenset({408, 409, 429})
# Status codes that mean the whole run is misconfigured (key, permission, model or URL).
FATAL_STATUS = frozenset({401, 403, 404})


def retryable(status: int) -> bool:
    return status in RETRY_STATUS or status >= 500


@dataclass
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 60.0

    def __post_init__(self):
        if self.max_retries < 0:
            raise FortifaiError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise FortifaiError("base_delay and max_delay must be >= 0")
        if not self.timeout > 0:
            raise FortifaiError(f"timeout must be > 0 seconds, got {self.timeout}")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `attempt` (1-based): the server's word (up to 5 minutes),
        else exponential backoff with full jitter, capped at `max_delay`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), RETRY_AFTER_CAP)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def retry_after_seconds(headers) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return email.utils.mktime_tz(parsed) - time.time()
            continue
        if math.isfinite(seconds):  # "nan" or "inf" from a hostile server: as if absent
            return seconds
    return None
