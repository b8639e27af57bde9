"""What a forgotten person leaves behind: salted hashes of their identifiers, never the values.

A tombstone (`landing/privacy/forgotten/<request_id>.json`) is written before anything is
removed, so a forget that stops half-way is resumed from it, and it is what later sends and
intake check a person against. The hashes are HMAC-SHA256 under a salt of this installation
(`SWITCHYARD_PRIVACY_SALT`, else a random one created once in `landing/privacy/salt`, readable
by its owner only): without the salt they cannot be matched to a guessed email.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from switchyard import landing

SALT_ENV = "SWITCHYARD_PRIVACY_SALT"


def folder(landing_dir: Path, part: str) -> Path:
    """`landing/privacy/<part>`: forgotten (tombstones) or audit."""
    return landing_dir / "privacy" / part


def salt(landing_dir: Path) -> bytes:
    """This installation's salt: the setting, else the one created on first use."""
    given = os.environ.get(SALT_ENV)
    if given:
        return given.encode()
    path = landing_dir / "privacy" / "salt"
    if not path.exists() and any(folder(landing_dir, "forgotten").glob("*.json")):
        raise RuntimeError(
            f"the privacy salt {path} is missing while tombstones exist: restore it (or set "
            f"{SALT_ENV}); a new salt would match none of the forgotten people"
        )
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # first writer wins: one salt, ever
            landing.replace_file(path, secrets.token_hex(32).encode(), 0o600, exclusive=True)
    return path.read_text().strip().encode()


def fingerprint(key: bytes) -> str:
    return digest(key, "fingerprint")[:16]


def digest(key: bytes, identifier_key: str) -> str:
    """The hash of one identifier key (`type:normalised value`)."""
    return hmac.new(key, identifier_key.encode(), hashlib.sha256).hexdigest()


def pseudonym(key: bytes, person_id: str) -> str:
    """What a forgotten person's id becomes where a row must stay (the ledger, journey state):
    stable, so counts per person hold, and not the id."""
    return f"forgotten_{digest(key, f'person_id:{person_id}')[:24]}"


@dataclass
class Tombstone:
    request_id: str
    requested_at: str
    hashes: list[str]  # of every identifier key and person id
    completed_at: str | None = None
    drop_at_intake: bool = False  # "suppress and delete": their new events are not landed
    salt_fingerprint: str = ""  # which salt the hashes are under (a lost salt is caught)
    stores: dict[str, dict[str, int]] = field(default_factory=dict)  # what was done, counts
    # why a queued request was not carried out (no value in it), and the hash it then stopped
    # blocking (kept to recognise the request if asked again)
    refused: str | None = None
    withdrawn: list[str] = field(default_factory=list)

    def write(self, landing_dir: Path, exclusive: bool = False) -> Path:
        """Atomically; `exclusive`: only if no tombstone of this request id exists yet
        (FileExistsError otherwise)."""
        target = path_of(landing_dir, self.request_id)
        document = json.dumps(asdict(self), indent=1, sort_keys=True).encode()
        landing.replace_file(target, document, exclusive=exclusive)
        return target

    @classmethod
    def read(cls, path: Path) -> Tombstone:
        return cls(**json.loads(path.read_text()))


def path_of(landing_dir: Path, request_id: str) -> Path:
    """A request's tombstone (and audit record)."""
    return folder(landing_dir, "forgotten") / f"{request_id}.json"


def now() -> str:
    """A tombstone's times: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def all_tombstones(landing_dir: Path) -> list[Tombstone]:
    return [Tombstone.read(p) for p in sorted(folder(landing_dir, "forgotten").glob("*.json"))]


class Forgotten:
    """Whether identifier keys name a forgotten person, for the sender and intake: the
    tombstones' hashes, read again whenever a tombstone is added (`intake_only`: only those of
    requests that drop new events)."""

    def __init__(self, landing_dir: Path, intake_only: bool = False) -> None:
        self.landing_dir = landing_dir
        self.intake_only = intake_only
        self._seen: int | None = None
        self._hashes: set[str] = set()
        self._key = b""

    def any(self) -> bool:
        """Whether anyone has been forgotten at all (nothing to hash against otherwise)."""
        self._refresh()
        return bool(self._hashes)

    def names(self, identifier_keys: Iterable[str | None]) -> bool:
        self._refresh()
        if not self._hashes:
            return False
        return any(k and digest(self._key, k) in self._hashes for k in identifier_keys)

    def _refresh(self) -> None:
        where = folder(self.landing_dir, "forgotten")
        try:
            seen = where.stat().st_mtime_ns  # a tombstone renamed into place changes it
        except FileNotFoundError:
            return
        if seen != self._seen:
            stones = all_tombstones(self.landing_dir)  # read once: hashes and salt prints
            self._hashes = {
                h for st in stones if st.drop_at_intake or not self.intake_only for h in st.hashes
            }
            self._key = salt(self.landing_dir) if self._hashes else b""
            prints = {st.salt_fingerprint for st in stones}
            if self._hashes and prints - {"", fingerprint(self._key)}:
                raise RuntimeError(
                    "the tombstones were hashed under another privacy salt than this process "
                    f"has ({SALT_ENV} or {self.landing_dir / 'privacy' / 'salt'}): use theirs"
                )
            self._seen = seen


def hashes_of(key: bytes, identifier_keys: Iterable[str]) -> list[str]:
    return sorted({digest(key, k) for k in identifier_keys})
