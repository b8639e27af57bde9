-- Sends the guards should have stopped, found after the fact from the ledger and the declared
-- policies: one row per violation. Empty is the promise; Dagster shows each kind as a check on
-- this model (tests/dbt/audit_*.sql), and a row says which send and why.
with

ledger_lines as (

    select * from {{ ref('stg_ledger__deliveries') }}

),

sent as (

    select * from {{ ref('fct_deliveries') }}
    where delivery_status = 'sent'

),

policies as (

    {{ journey_policies() }}

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

-- What a cap counts: every send but a transactional journey's, across channels and journeys.
counted as (

    select sent.*
    from sent
    left join policies on sent.journey = policies.journey
    where not coalesce(policies.transactional, false)

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
    from counted as later
    inner join policies
        on later.journey = policies.journey
        and policies.cap_messages is not null
        and not policies.cap_calendar_day
    inner join counted as earlier
        on earlier.current_person_id = later.current_person_id
        and earlier.sent_at <= later.sent_at
        and earlier.sent_at > {{ dbt.dateadd('second', '-1 * cast(policies.cap_hours * 3600 as ' ~ dbt.type_int() ~ ')', 'later.sent_at') }}
    group by later.send_key, policies.cap_hours, policies.cap_messages
    having count(*) > policies.cap_messages

),

-- The person's consent as recorded before each marketing send, per user id and topic (the
-- channel's marketing consent and the journey's own topic): an opt-out there should have held.
-- A consent that happened earlier but landed after the send shows here too: the guard could
-- not have seen it, and the row's detail says when it was recorded.
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
    inner join policies
        on sent.journey = policies.journey
        and not policies.transactional
    inner join user_ids
        on sent.current_person_id = user_ids.person_id
    inner join consents
        on user_ids.user_id = consents.user_id
        and sent.channel = consents.channel
        and (consents.topic = 'marketing' or consents.topic = policies.topic)
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

violations as (

    select * from duplicate_sends
    union all
    select * from over_cap
    union all
    select * from after_opt_out

)

select
    violations.violation,
    violations.send_key,
    deliveries.journey,
    deliveries.step,
    deliveries.current_person_id as person_id,
    deliveries.channel,
    deliveries.sent_at,
    violations.detail
from violations
left join {{ ref('fct_deliveries') }} as deliveries
    on violations.send_key = deliveries.send_key
