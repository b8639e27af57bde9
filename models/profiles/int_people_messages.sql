-- What each person received and how they engaged: from the ledger and provider feedback, with
-- the ledger's person ids followed through merges (dim_person_aliases), and, for when they
-- engage, the email opens and clicks tracked as events (var tracked_email_engagement).
with

ledger as (

    select * from {{ ref('stg_ledger__deliveries') }}

),

feedback as (

    select * from {{ ref('int_message_feedback') }}

),

aliases as (

    select
        *,
        max(case when person_id = alias_person_id then 1 else 0 end)
            over (partition by alias_person_id) = 1 as alias_lives_on
    from {{ ref('dim_person_aliases') }}

),

sends as (

    -- a send recorded under a person id that was since merged or split belongs to the people who
    -- hold its identifiers now; one recorded under a split id that lives on after the split is
    -- its own only
    select
        ledger.send_key,
        coalesce(aliases.person_id, ledger.person_id) as person_id,
        ledger.channel,
        ledger.recorded_at as sent_at
    from ledger
    left join aliases
        on ledger.person_id = aliases.alias_person_id
        and (
            not aliases.alias_lives_on
            or aliases.person_id = aliases.alias_person_id
            or ledger.recorded_at < aliases.aliased_at
        )
    where ledger.delivery_status = 'sent'

),

engagements as (

    select
        sends.person_id,
        sends.channel,
        feedback.feedback_event,
        feedback.occurred_at
    from feedback
    inner join sends
        on feedback.send_key = sends.send_key
    where feedback.feedback_event in ('open', 'click')

),

{% set tracked = var('tracked_email_engagement', []) %}
tracked_engagements as (

    -- Counted for the active hour only: an open of Switchyard's own mail may arrive both ways.
    select person_id, occurred_at
    from {{ ref('int_events_stitched') }}
    where event_type = 'track'
        and person_id is not null
        {% if tracked %}
        and event_name in ({% for name in tracked %}'{{ name }}'{{ "," if not loop.last }}{% endfor %})
        {% else %}
        and false
        {% endif %}

),

sent_per_person as (

    select
        person_id,
        count(*) as messages_sent,
        {% for channel in ['email', 'sms', 'push'] %}
        max(case when channel = '{{ channel }}' then sent_at end) as last_{{ channel }}_sent_at,
        {% endfor %}
        max(sent_at) as last_message_at
    from sends
    group by person_id

),

engaged_per_person as (

    select
        person_id,
        count(case when feedback_event = 'open' then 1 end) as opens,
        count(case when feedback_event = 'click' then 1 end) as clicks,
        max(occurred_at) as last_engaged_at
    from engagements
    group by person_id

),

channel_scores as (

    -- A click says more than an open.
    select
        person_id,
        channel,
        sum(case when feedback_event = 'click' then 2 else 1 end) as score,
        max(occurred_at) as last_at
    from engagements
    group by person_id, channel

),

best_channel as (

    select person_id, channel as most_engaged_channel
    from (
        select
            person_id,
            channel,
            row_number() over (partition by person_id order by score desc, last_at desc, channel)
                as preference
        from channel_scores
    ) ranked
    where preference = 1

),

active_hours as (

    -- The hour (UTC) of the day they open and click most: when a wait can catch them.
    select person_id, active_hour as usual_active_hour_utc
    from (
        select
            person_id,
            active_hour,
            row_number() over (
                partition by person_id order by engagements desc, active_hour
            ) as preference
        from (
            select
                person_id,
                cast(extract(hour from occurred_at) as integer) as active_hour,
                count(*) as engagements
            from (
                select person_id, occurred_at from engagements
                union all
                select person_id, occurred_at from tracked_engagements
            ) engaged
            group by person_id, cast(extract(hour from occurred_at) as integer)
        ) per_hour
    ) ranked
    where preference = 1

),

last_channel as (

    select person_id, channel as last_engaged_channel
    from (
        select
            person_id,
            channel,
            row_number() over (partition by person_id order by occurred_at desc, channel) as recency
        from engagements
    ) ranked
    where recency = 1

),

people as (

    select person_id from sent_per_person
    union
    select person_id from active_hours

),

final as (

    select
        people.person_id,
        coalesce(sent_per_person.messages_sent, 0) as messages_sent,
        sent_per_person.last_email_sent_at,
        sent_per_person.last_sms_sent_at,
        sent_per_person.last_push_sent_at,
        sent_per_person.last_message_at,
        coalesce(engaged_per_person.opens, 0) as opens,
        coalesce(engaged_per_person.clicks, 0) as clicks,
        engaged_per_person.last_engaged_at,
        last_channel.last_engaged_channel,
        best_channel.most_engaged_channel,
        active_hours.usual_active_hour_utc
    from people
    left join sent_per_person
        on people.person_id = sent_per_person.person_id
    left join engaged_per_person
        on people.person_id = engaged_per_person.person_id
    left join last_channel
        on people.person_id = last_channel.person_id
    left join best_channel
        on people.person_id = best_channel.person_id
    left join active_hours
        on people.person_id = active_hours.person_id

)

select * from final
