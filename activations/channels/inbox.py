"""The in_app channel: a message is delivered by writing it to the person's inbox (landing files
that the inbox endpoint serves and dbt reads), under its send key, fsynced before the outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from activations.channels.message import Message, Outcome
from activations.inbox import store
from switchyard.clock import utc_now


@dataclass
class InboxClient:
    landing_dir: Path
    clock: Callable[[], datetime] = utc_now
    channel: str = store.CHANNEL
    # Written again under the same send key, it is still one message: safe to retry.
    idempotent: bool = True
    _writer: store.InboxWriter | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def deliver(self, message: Message) -> Outcome:
        with self._lock:  # one file per run, opened by the first message
            if self._writer is None:
                self._writer = store.InboxWriter(self.landing_dir, "inbox", "messages", "run")
            writer = self._writer
        writer.append(
            store.message_row(
                message.send_key,
                message.recipient,  # the user id the app knows the person by
                message.title or message.subject,
                message.body,
                message.tags.get("journey"),
                message.tags.get("step"),
                self.clock(),
            )
        )
        return Outcome("sent", provider_message_id=message.send_key)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
