-- Who is in which journey now, at which step, since when: each entry's latest transition.
with

transitions as (

    select * from {{ ref('fct_journey_transitions') }}

),

ranked as (

    select
        *,
        row_number() over (partition by entry_id order by seq desc) as recency
    from transitions

)

select
    journey,
    entry_id,
    person_id,
    node,
    case
        when node in ('(completed)', '(exited)', '(converted)', '(not entered)', '(left audience)')
            then 'ended'
        else 'active'
    end as entry_state,
    reached_at as since,
    next_at,
    entered_at,
    arm,
    reason,
    detail
from ranked
where recency = 1
