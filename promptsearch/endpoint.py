"""Waiting for an OpenAI-compatible endpoint someone else runs (a generator's or the proposer LM's URL).

In: the URL, who needs it (for messages) and how long to wait. Out: nothing once something answers HTTP;
a `UserError` naming the URL after the bound. A user never waits in silence: a wait longer than
`NOTICE_SECONDS` says so on stderr, and again every few seconds until it ends.
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from promptsearch.errors import UserError
from promptsearch.logs import WaitNotice

NOTICE_SECONDS = 5.0  # a wait for an endpoint longer than this says so on stderr

ReadyTimeoutSeconds = Annotated[
    float, Field(gt=0, le=3600, description="endpoint: how long to wait for the URL to answer before failing")
]


def wait_for_endpoint(url: str, owner: str, timeout_seconds: float) -> None:
    """Return once something answers HTTP at `url` (any status: an endpoint that wants a key still answers);
    after `timeout_seconds` of connection errors raise a `UserError` naming `owner` and the URL."""
    import httpx

    url = url.rstrip("/")
    deadline = time.monotonic() + timeout_seconds
    with WaitNotice(f"{owner} at {url}", f"up to {timeout_seconds:g} s", NOTICE_SECONDS):
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                return
            except httpx.TransportError as exc:
                problem = str(exc) or type(exc).__name__
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{owner}: nothing answers at {url} ({problem}; waited "
                    f"{timeout_seconds:g} s, `ready_timeout_seconds` sets the wait)"
                )
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
