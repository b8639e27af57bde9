"""Content fetched at send time (as Braze's Connected Content): a send step declares
`connected_content: [{name, url, timeout_seconds, on_failure, fallback}]`, each URL is fetched
with the message's values filled in (URL-encoded), and the answer (JSON, else text) becomes the
template value `name`: `{recs.title}`.

One fetch per distinct URL per run (a cache), each bounded by its timeout. A fetch that fails
(no answer in time, an error status, an unreadable body) follows the declared rule: `skip` the
message (reason `connected_content_failed`, with the URL and why), or use `fallback`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from activations.graph import ConnectedContent
from activations.render import MissingTemplateVariable, TemplateProblem, fill


class ContentUnavailable(Exception):
    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"{url}: {why}")


@dataclass
class ContentFetcher:
    http: httpx.Client
    _cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    fetches: int = 0  # requests made (the rest came from the cache)

    def values(
        self, specs: tuple[ConnectedContent, ...], values: Mapping[str, object]
    ) -> dict[str, object]:
        """Each spec's content by name; ContentUnavailable for one that failed without a
        fallback. Values go into the URL encoded, so they cannot change its shape."""
        out: dict[str, object] = {}
        for spec in specs:
            encoded = {k: quote(str(v), safe="") for k, v in values.items() if v is not None}
            try:
                url = fill(spec.url, encoded, {}, None)
            except (MissingTemplateVariable, TemplateProblem) as exc:
                raise ContentUnavailable(spec.url, f"the URL cannot be filled in: {exc}") from exc
            try:
                out[spec.name] = self._get(url, spec.timeout_seconds)
            except ContentUnavailable:
                if spec.on_failure == "skip":
                    raise
                out[spec.name] = spec.fallback
        return out

    def _get(self, url: str, timeout: float) -> Any:
        with self._lock:
            if url in self._cache:
                return self._cache[url]
        try:
            response = self.http.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ContentUnavailable(url, f"no answer: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ContentUnavailable(url, f"HTTP {response.status_code}")
        if "json" in response.headers.get("content-type", ""):
            try:
                content: Any = response.json()
            except ValueError as exc:
                raise ContentUnavailable(url, "the answer is not JSON") from exc
        else:
            content = response.text
        with self._lock:
            self._cache[url] = content
            self.fetches += 1
        return content
