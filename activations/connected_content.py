"""Content fetched at send time (as Braze's Connected Content): a send step declares
`connected_content: [{name, url, timeout_seconds, on_failure, fallback}]`, each URL is fetched
with the message's values filled in (URL-encoded), and the answer (JSON, else text) becomes the
template value `name`: `{recs.title}`.

Per run: one fetch per distinct URL (answers and failures cached), each within its timeout for
the whole exchange and MAX_BYTES of answer; after HOST_FAILURES failures in a row from one host,
the rest of the run does not wait on it. A fetch that fails (no answer in time, an error
status, an unreadable or oversized body, a URL that cannot be filled in) follows the declared
rule: `skip` the message (reason `connected_content_failed`, with the URL and why), or use
`fallback`. Fetches run one at a time, on the run's thread (see the issue note)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from activations.graph import ConnectedContent
from activations.render import MissingTemplateVariable, TemplateProblem, fill

MAX_BYTES = 256 * 1024  # an answer larger than this is a failure
HOST_FAILURES = 3  # failures in a row from one host before the run stops asking it


class ContentUnavailable(Exception):
    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"{url}: {why}")
        self.why = why


def _encoded(value: object) -> str:
    text = quote(str(value), safe="")
    # '.' and '..' would move up the URL's path: encoded, they stay one segment
    return text.replace(".", "%2E") if set(text) <= {"."} else text


@dataclass
class ContentFetcher:
    http: httpx.Client
    _answers: dict[str, Any] = field(default_factory=dict)
    _failures: dict[str, ContentUnavailable] = field(default_factory=dict)
    _host_failures: dict[str, int] = field(default_factory=dict)
    fetches: int = 0  # requests made (the rest came from the cache)

    def values(
        self, specs: tuple[ConnectedContent, ...], values: Mapping[str, object]
    ) -> dict[str, object]:
        """Each spec's content by name; ContentUnavailable for one that failed without a
        fallback. Values go into the URL encoded, so they cannot change its shape."""
        encoded = {k: _encoded(v) for k, v in values.items() if v is not None}
        out: dict[str, object] = {}
        for spec in specs:
            try:
                try:
                    url = fill(spec.url, encoded, {}, None)
                except (MissingTemplateVariable, TemplateProblem) as exc:
                    why = f"the URL cannot be filled in: {exc}"
                    raise ContentUnavailable(spec.url, why) from exc
                out[spec.name] = self._get(url, spec.timeout_seconds)
            except ContentUnavailable:
                if spec.on_failure == "skip":
                    raise
                out[spec.name] = spec.fallback
        return out

    def _get(self, url: str, timeout: float) -> Any:
        if url in self._answers:
            return self._answers[url]
        if url in self._failures:
            raise self._failures[url]
        host = urlsplit(url).netloc
        if self._host_failures.get(host, 0) >= HOST_FAILURES:
            raise ContentUnavailable(url, f"{host} failed {HOST_FAILURES} times in a row this run")
        try:
            content = self._fetch(url, timeout)
        except ContentUnavailable as failed:
            self._failures[url] = failed
            self._host_failures[host] = self._host_failures.get(host, 0) + 1
            raise
        self._host_failures[host] = 0
        self._answers[url] = content
        return content

    def _fetch(self, url: str, timeout: float) -> Any:
        self.fetches += 1
        deadline = time.monotonic() + timeout
        body = bytearray()
        try:
            with self.http.stream("GET", url, timeout=timeout) as response:
                if response.status_code != 200:
                    raise ContentUnavailable(url, f"HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_BYTES:
                        raise ContentUnavailable(url, f"the answer is over {MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise ContentUnavailable(url, f"no whole answer within {timeout:g} s")
                kind = response.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise ContentUnavailable(url, f"no answer: {type(exc).__name__}") from exc
        if "json" in kind:
            try:
                return json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise ContentUnavailable(url, "the answer is not JSON") from exc
        return body.decode("utf-8", "replace")
