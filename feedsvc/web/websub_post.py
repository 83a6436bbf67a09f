"""The one HTTP request of WebSub: POST a publish notification to a hub, and read its answer.

``POST <hub>`` with ``hub.mode=publish&hub.url=<feed self URL>`` is the
de-facto form hubs accept (WebSub leaves publishing to the hub). The request is
all this module knows: the answer is returned as a status and the hub's
Retry-After, and whether to try again is `websub.Notifier`'s decision.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from feedsvc import __version__

USER_AGENT = f"feedsvc/{__version__} (WebSub publisher)"


def post_publish(hub: str, feed_url: str, timeout: float) -> tuple[int, float | None]:
    """POST the publish notification for `feed_url` to `hub`; its status and Retry-After.

    Network failures raise OSError. Redirects are not followed (a POST must
    not turn into a GET); a 3xx is final like any other non-2xx answer.
    """
    body = urlencode({"hub.mode": "publish", "hub.url": feed_url}).encode("ascii")
    req = urllib.request.Request(
        hub,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT},
    )
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65_536)
            return resp.status, None
    except urllib.error.HTTPError as e:
        status, retry = e.code, _retry_after(e.headers.get("Retry-After"))
        e.close()
        return status, retry


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
