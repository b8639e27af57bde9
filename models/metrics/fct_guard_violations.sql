-- Sends the guards should have stopped, found after the fact from the ledger and the declared
-- policies: one row per violation. Dagster shows each kind as a check on this model
-- (tests/dbt/audit_*.sql), and a row says which send and why. People are matched as the send
-- named them (the guard could not know of a merge made later).
with

ledger_lines as (

    select * from {{ ref('stg_ledger__deliveries') }}

),

policies as (

    {{ journey_policies() }}

),

-- Each accepted send once: its first `sent` line.
sent as (

    select
        send_key,
        min(journey) as journey,
        min(step) as step,
        min(person_id) as person_id,
        min(channel) as channel,
        min(recipient) as recipient,
        min(recorded_at) as sent_at
    from ledger_lines
    where delivery_status = 'sent'
    group by send_key

),

-- A provider accepted the same send key twice: the exactly-once promise broken.
duplicate_sends as (

    select
        'duplicate_send' as violation,
        send_key,
        cast(count(*) as {{ dbt.type_string() }}) || ' accepted sends of one send key' as detail
    from ledger_lines
    where delivery_status = 'sent'
    group by send_key
    having count(*) > 1

),

-- What a cap counts, as the guard counts it (activations/ledger/store.py SENT_SQL): a send, or
-- an attempt whose outcome stayed unknown (it may have gone out); never a transactional one, nor
-- one of a journey the project's cap policy exempts.
counted as (

    select
        ledger_lines.send_key,
        min(ledger_lines.person_id) as person_id,
        min(ledger_lines.recorded_at) as sent_at
    from ledger_lines
    left join policies on ledger_lines.journey = policies.journey
    where not coalesce(policies.uncounted, false)
        and (
            ledger_lines.delivery_status = 'sent'
            or ledger_lines.delivery_status = 'unknown'
            or (ledger_lines.delivery_status = 'failed' and ledger_lines.reason = 'outcome_unknown')
        )
    group by ledger_lines.send_key

),

-- A send of a capped journey with more counted sends to the person in the window ending at it
-- (itself included) than the cap allows. Calendar-day caps are judged in each person's zone by
-- the guard; they are not checked here.
over_cap as (

    select
        'over_frequency_cap' as violation,
        later.send_key,
        cast(count(*) as {{ dbt.type_string() }}) || ' sends within '
            || cast(policies.cap_hours as {{ dbt.type_string() }}) || ' h; the cap is '
            || cast(policies.cap_messages as {{ dbt.type_string() }}) as detail
    from sent as later
    inner join policies
        on later.journey = policies.journey
        and policies.cap_messages is not null
        and not policies.cap_calendar_day
        and not policies.transactional
    inner join counted as earlier
        on later.person_id = earlier.person_id
        and earlier.sent_at <= later.sent_at
        and earlier.sent_at > {{ dbt.dateadd('second', '-1 * cast(policies.cap_hours * 3600 as ' ~ dbt.type_int() ~ ')', 'later.sent_at') }}
    group by later.send_key, policies.cap_hours, policies.cap_messages
    having count(*) > policies.cap_messages

),

consents as (

    select * from {{ ref('stg_preferences__consents') }}
    where reject_reason is null

),

user_ids as (

    select person_id, identifier_value as user_id
    from {{ ref('dim_identities') }}
    where identifier_type = 'user_id'

),

-- The person's consent as recorded before each send, per user id and topic: the channel's
-- marketing consent (marketing sends only) and the journey's own topic (every send, as the
-- guard holds a topic opt-out for transactional messages too). A consent that happened
-- earlier but landed after the send shows here too: the guard could not have seen it, and the
-- row's detail says when it was recorded.
consent_before_send as (

    select
        sent.send_key,
        consents.topic,
        consents.consent_status,
        consents.recorded_at,
        row_number() over (
            partition by sent.send_key, user_ids.user_id, consents.topic
            order by consents.recorded_at desc, consents.consent_id desc
        ) as recency
    from sent
    left join policies  -- a journey no longer declared is judged as marketing
        on sent.journey = policies.journey
    inner join user_ids
        on sent.person_id = user_ids.person_id
    inner join consents
        on user_ids.user_id = consents.user_id
        and sent.channel = consents.channel
        and (
            (consents.topic = 'marketing' and not coalesce(policies.transactional, false))
            or consents.topic = policies.topic
        )
        and consents.recorded_at <= sent.sent_at

),

after_opt_out as (

    select
        'sent_after_opt_out' as violation,
        send_key,
        min(topic || ' unsubscribed at ' || cast(recorded_at as {{ dbt.type_string() }}))
            as detail
    from consent_before_send
    where recency = 1 and consent_status = 'unsubscribed'
    group by send_key

),

suppressions as (

    select * from {{ ref('stg_preferences__suppressions') }}
    where reject_reason is null

),

-- The address's suppression state before each send, per scope: a bounce, a STOP, an
-- unsubscribe landed for the address. Scope `all` holds every message, `marketing` all but
-- transactional ones (activations/guards.py suppressed_as).
suppression_before_send as (

    select
        sent.send_key,
        suppressions.scope,
        suppressions.suppression_status,
        suppressions.reason,
        suppressions.recorded_at,
        row_number() over (
            partition by sent.send_key, suppressions.scope
            order by suppressions.recorded_at desc, suppressions.suppression_id desc
        ) as recency
    from sent
    left join policies
        on sent.journey = policies.journey
    inner join suppressions
        on sent.channel = suppressions.channel
        and suppressions.address = case
            when sent.channel = 'email' then lower(sent.recipient) else sent.recipient
        end
        and (suppressions.scope = 'all' or not coalesce(policies.transactional, false))
        and suppressions.recorded_at <= sent.sent_at

),

to_suppressed as (

    select
        'sent_to_suppressed_address' as violation,
        send_key,
        min(
            scope || ' suppressed (' || coalesce(reason, 'listed') || ') at '
            || cast(recorded_at as {{ dbt.type_string() }})
        ) as detail
    from suppression_before_send
    where recency = 1 and suppression_status = 'suppressed'
    group by send_key

),

violations as (

    select * from duplicate_sends
    union all
    select * from over_cap
    union all
    select * from after_opt_out
    union all
    select * from to_suppressed

)

select
    violations.violation,
    violations.send_key,
    sent.journey,
    sent.step,
    sent.person_id,
    sent.channel,
    sent.sent_at,
    violations.detail
from violations
left join sent
    on violations.send_key = sent.send_key
