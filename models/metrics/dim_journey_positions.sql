-- Who is in which journey now, at which step, since when: each entry's latest transition.
with

transitions as (

    select * from {{ ref('fct_journey_transitions') }}

),

successors as (

    {{ person_successors() }}

),

ranked as (

    select
        *,
        row_number() over (partition by entry_id order by seq desc) as recency
    from transitions

)

select
    ranked.journey,
    ranked.entry_id,
    ranked.person_id,
    -- who the person is today: an entry that has not moved since a merge still names the old id
    coalesce(successors.person_id, ranked.person_id) as current_person_id,
    ranked.node,
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
left join successors
    on ranked.person_id = successors.alias_person_id
where ranked.recency = 1
