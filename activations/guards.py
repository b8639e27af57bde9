"""Send-time guards: consent, reachability and the global frequency cap, on the freshest data.

The audience may be minutes old; an opt-out recorded a second ago must still win, so consent is
read from the landing files right before sending, and the cap from the ledger including this run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from activations.journeys import FrequencyCap, Step
from activations.ledger import LedgerState
from switchyard import landing


@dataclass(frozen=True)
class Person:
    person_id: str
    user_id: str | None
    email: str | None
    phone: str | None
    push_token: str | None
    first_name: str | None
    # channel -> 'subscribed' / 'unsubscribed' / 'none', as the warehouse last built it
    consent: dict[str, str] = field(default_factory=dict)

    def address(self, channel: str) -> str | None:
        return {"email": self.email, "sms": self.phone, "push": self.push_token}.get(channel)


@dataclass(frozen=True)
class Channel:
    channel: str
    recipient: str


def fresh_consents(landing_dir: Path) -> dict[tuple[str, str], tuple[str, datetime]]:
    """(user_id, channel) -> (status, recorded_at) of the latest valid marketing consent change."""
    folder = landing.table_dir(landing_dir, "preferences", "consents")
    con = duckdb.connect()
    rows = con.execute(
        f"""
        select user_id, lower(channel), lower(status), changed_at
        from (
            select *, try_cast(recorded_at as timestamp) as changed_at,
                row_number() over (
                    partition by user_id, lower(channel)
                    order by try_cast(recorded_at as timestamp) desc, consent_id desc
                ) as recency
            from read_json('{folder}/*.jsonl', format='newline_delimited',
                columns={{'consent_id': 'VARCHAR', 'user_id': 'VARCHAR', 'channel': 'VARCHAR',
                          'topic': 'VARCHAR', 'status': 'VARCHAR', 'recorded_at': 'VARCHAR'}})
            where coalesce(lower(topic), 'marketing') = 'marketing'
                and lower(status) in ('subscribed', 'unsubscribed')
                and try_cast(recorded_at as timestamp) is not null
        ) ranked
        where recency = 1
        """
    ).fetchall()
    con.close()
    return {(user_id, channel): (status, at) for user_id, channel, status, at in rows}


def consent_for(
    person: Person, channel: str, fresh: dict[tuple[str, str], tuple[str, datetime]]
) -> str:
    if person.user_id and (person.user_id, channel) in fresh:
        return fresh[(person.user_id, channel)][0]
    return person.consent.get(channel, "none")


def choose_channel(
    step: Step, person: Person, fresh: dict[tuple[str, str], tuple[str, datetime]]
) -> Channel | str:
    """The first of the step's channels with consent and an address, else the reason none fits."""
    consented_without_address = False
    for channel in step.channels:
        if consent_for(person, channel, fresh) != "subscribed":
            continue
        recipient = person.address(channel)
        if recipient:
            return Channel(channel, recipient)
        consented_without_address = True
    return "no_address" if consented_without_address else "no_consent"


def over_cap(cap: FrequencyCap | None, person_id: str, ledger: LedgerState, now: datetime) -> bool:
    return cap is not None and ledger.sends_within(person_id, now, cap.per_hours) >= cap.messages
