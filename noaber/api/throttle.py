"""Login throttling: failed logins are counted per username and per client address.

Each key has a ladder of moving-window limits (the ``limits`` library): after 10 failures
within a minute the next attempt is refused until the oldest failure leaves the window, after
20 within 10 minutes for up to 10 minutes, after 30 within an hour for up to an hour, and after
50 within a day the login is locked for up to a day (or until an operator resets the
password). So the wait grows with every rung instead of answering an attacker at full speed.
A refused attempt does not check the password at all, right or wrong; a successful login
clears the username's failures (not the address's). A wrong current password in a password
change counts as a failed login too.

The counts live in the storage named by ``Settings.rate_limit_storage``: ``memory://`` (the
default) for one process, ``redis://host:6379/0`` for several API processes sharing one count
(needs the ``redis`` client package).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

from fastapi import HTTPException, Request, status
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from energy.errors import NoaberError
from energy.settings import Settings

#: Failures a username may have within each window before further attempts are refused.
USER_LIMITS = ("10/minute", "20/10 minutes", "30/hour", "50/day")
#: The same for one client address (several users may share an address).
ADDRESS_LIMITS = ("30/minute", "60/10 minutes", "100/hour", "300/day")
#: A username is cut to this length before it becomes a key.
KEY_MAX_LEN = 100

_app_lock = threading.Lock()


class LoginThrottled(NoaberError):
    """Too many failed logins for a username or an address: wait ``retry_after_s`` seconds.

    ``locked`` is True when the last rung of the ladder (the day) was reached.
    """

    def __init__(self, retry_after_s: int, locked: bool) -> None:
        self.retry_after_s = retry_after_s
        self.locked = locked
        if locked:
            msg = (
                "login locked after too many failed attempts; try again in "
                f"{retry_after_s} s or ask an operator to reset the password"
            )
        else:
            msg = f"too many failed logins; try again in {retry_after_s} s"
        super().__init__(msg)


class LoginThrottle:
    """Counts failed logins and refuses attempts over the limits (see the module docstring).

    Parameters
    ----------
    storage_url : str
        A ``limits`` storage URL (``memory://``, ``redis://...``).
    user_limits, address_limits : sequence of str
        ``limits`` rate strings, shortest window first; the last one is the lock.
    """

    def __init__(
        self,
        storage_url: str = "memory://",
        user_limits: Sequence[str] = USER_LIMITS,
        address_limits: Sequence[str] = ADDRESS_LIMITS,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_url))
        self._user = [parse(s) for s in user_limits]
        self._address = [parse(s) for s in address_limits]

    def _keys(self, username: str, address: str) -> list[tuple[list[RateLimitItem], str, str]]:
        return [
            (self._user, "login-user", username[:KEY_MAX_LEN]),
            (self._address, "login-address", address),
        ]

    def check(self, username: str, address: str) -> None:
        """Raise :class:`LoginThrottled` if either key is over one of its limits."""
        retry_after_s, locked = 0, False
        for items, scope, key in self._keys(username, address):
            for i, item in enumerate(items):
                if self._limiter.test(item, scope, key):
                    continue
                reset = self._limiter.get_window_stats(item, scope, key).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                if wait > retry_after_s:
                    retry_after_s, locked = wait, i == len(items) - 1
        if retry_after_s:
            raise LoginThrottled(retry_after_s, locked)

    def failed(self, username: str, address: str) -> None:
        """Count one failed login for the username and for the address."""
        for items, scope, key in self._keys(username, address):
            for item in items:
                self._limiter.hit(item, scope, key)

    def forget_user(self, username: str) -> None:
        """Clear the username's failures (a successful login, a password reset)."""
        for item in self._user:
            self._limiter.clear(item, "login-user", username[:KEY_MAX_LEN])


def too_many_requests(exc: LoginThrottled) -> HTTPException:
    """The API's answer to a throttled attempt: 429 with ``Retry-After``."""
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=str(exc),
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def app_throttle(request: Request) -> LoginThrottle:
    """The app's :class:`LoginThrottle`, made on first use from its settings."""
    state = request.app.state
    with _app_lock:
        throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
        if throttle is None:
            settings: Settings = state.settings
            throttle = state.login_throttle = LoginThrottle(settings.rate_limit_storage)
    return throttle


def client_address(request: Request) -> str:
    """The client's address (behind a reverse proxy: run uvicorn with ``--proxy-headers``)."""
    return request.client.host if request.client else "unknown"
