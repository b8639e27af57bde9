-- Latest non-null trait per person, with the time it was seen (identify calls and event context).
-- Person-scoped incremental: a run recomputes the people with new events or changed identifiers
-- from all their events (macros/people_touched.sql).
-- depends_on: {{ ref('dim_identities') }}
{{ person_scoped_incremental(events=true) }}
with

phone_numbers as (

    select * from {{ ref('int_phone_numbers') }}

),

events as (

    select
        stitched.person_id,
        stitched.occurred_at,
        stitched.user_id,
        {{ normalize_email('stitched.trait_email') }} as email,
        stitched.trait_email as raw_email,
        phone_numbers.phone_e164 as phone,
        stitched.trait_phone as raw_phone,
        {{ blank_to_null(json_text('stitched.traits', '$.first_name')) }} as first_name,
        stitched.push_token,
        stitched.timezone
    from {{ ref('int_events_stitched') }} as stitched
    left join phone_numbers
        on stitched.trait_phone = phone_numbers.raw_phone
    where stitched.person_id is not null
        and {{ person_touched('stitched.person_id', events=true) }}

),

people as (

    select
        person_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(distinct user_id) as user_id_count
    from events
    group by person_id

),

{% set traits = ['user_id', 'email', 'raw_email', 'phone', 'raw_phone', 'first_name', 'push_token', 'timezone'] %}
{% for trait in traits %}
latest_{{ trait }} as (
    {{ latest_value('events', 'person_id', trait, 'occurred_at', trait) }}
),
{% endfor %}

joined as (

    select
        people.person_id,
        people.first_seen_at,
        people.last_seen_at,
        people.user_id_count,
        {% for trait in traits %}
        latest_{{ trait }}.{{ trait }},
        latest_{{ trait }}.{{ trait }}_at,
        {% endfor %}
        {{ run_batch_stamp() }} as profiled_at
    from people
    {% for trait in traits %}
    left join latest_{{ trait }}
        on people.person_id = latest_{{ trait }}.person_id
    {% endfor %}

)

select * from joined
