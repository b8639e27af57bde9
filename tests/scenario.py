"""Hand-made people and their events, written as landing files: tests read like the playbook."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from switchyard import events, landing

T0 = datetime(2026, 11, 2, 9, 0, 0)


def at(minutes: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours)


@dataclass
class Scenario:
    landing_dir: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)

    def person(
        self,
        user_id: str,
        *,
        devices: tuple[str, ...] = (),
        email: str | None = None,
        phone: str | None = None,
        first_name: str | None = None,
        push_token: str | None = None,
        consent: tuple[str, ...] = (),
        when: datetime = T0 - timedelta(days=1),
    ) -> Scenario:
        given = {"email": email, "phone": phone, "first_name": first_name}
        traits = {k: v for k, v in given.items() if v is not None}
        for device in devices or (None,):
            self.events.append(
                events.identify(
                    when,
                    user_id=user_id,
                    anonymous_id=device,
                    traits=traits,
                    push_token=push_token,
                    timezone_name="Europe/Berlin",
                )
            )
        for channel in consent:
            self.consents.append(events.consent(user_id, channel, "subscribed", when))
        return self

    def track(
        self,
        name: str,
        when: datetime,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        **properties: Any,
    ) -> Scenario:
        self.events.append(
            events.track(
                name, when, user_id=user_id, anonymous_id=anonymous_id, properties=properties
            )
        )
        return self

    def cart(self, when: datetime, sku: str = "sku-tee", quantity: int = 1, **ids: Any) -> Scenario:
        return self.track("cart_updated", when, sku=sku, quantity=quantity, **ids)

    def purchase(self, when: datetime, **ids: Any) -> Scenario:
        return self.track("purchase_completed", when, **ids)

    def opt_out(self, user_id: str, channel: str, when: datetime) -> Scenario:
        self.consents.append(events.consent(user_id, channel, "unsubscribed", when))
        return self

    def land(self) -> None:
        """Write what was added since the last call as new landing files, like a producer."""
        landing.ensure_layout(self.landing_dir)
        for source, table, rows in (
            ("segment", "events", self.events),
            ("shop", "orders", self.orders),
            ("preferences", "consents", self.consents),
        ):
            if rows:
                landing.write_batch(self.landing_dir, source, table, rows, prefix="test")
                rows.clear()
