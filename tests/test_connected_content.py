"""Connected content's fetcher on its own: URL filling, caching and failing fast."""

from __future__ import annotations

import httpx

from activations.connected_content import HOST_FAILURES, ContentFetcher, ContentUnavailable
from activations.graph import ConnectedContent
from sandbox import Sandbox


def test_values_cannot_move_the_url_and_a_dead_host_is_not_waited_on(sandbox: Sandbox) -> None:
    fetcher = ContentFetcher(httpx.Client())
    recs = ConnectedContent("recs", f"{sandbox.base_url}/_sandbox/content?user={{user_id}}")
    got = fetcher.values((recs,), {"user_id": ".."})
    assert got["recs"]["user"] == ".."  # one value, encoded, not a path step
    assert fetcher.values((recs,), {"user_id": ".."}) == got and fetcher.fetches == 1
    dead = ConnectedContent("recs", "http://127.0.0.1:9/for/{user_id}", timeout_seconds=0.5)
    failures = []
    for n in range(HOST_FAILURES + 3):
        try:
            fetcher.values((dead,), {"user_id": f"u{n}"})
        except ContentUnavailable as failed:
            failures.append(failed.why)
    assert len(failures) == HOST_FAILURES + 3
    assert fetcher.fetches == 1 + HOST_FAILURES  # then the run stops asking that host
    assert failures[-1].endswith(f"failed {HOST_FAILURES} times in a row this run")
    # a URL that cannot be filled in falls back when the step says so
    fallback = ConnectedContent("recs", dead.url, on_failure="fallback", fallback="ours")
    assert fetcher.values((fallback,), {}) == {"recs": "ours"}
