-- Every journey's entries, from the engine's transitions: when each began, its arm, and how and
-- when it ended (if it has).
with

transitions as (

    select * from {{ ref('fct_journey_transitions') }}

),

entered as (

    select entry_id, journey, person_id, entered_at, arm
    from transitions
    where seq = 0 and reason = 'entered'

),

successors as (

    {{ person_successors() }}

),

ended as (

    select
        entry_id,
        min(case when node in ('(exited)', '(converted)') then reached_at end) as exited_at,
        min(case when node = '(converted)' then reached_at end) as converted_at,
        min(case when node = '(completed)' then reached_at end) as completed_at
    from transitions
    group by entry_id

)

select
    entered.entry_id,
    entered.journey,
    entered.person_id,
    -- who the person is today, after any merge since (the engine follows them too)
    coalesce(successors.person_id, entered.person_id) as current_person_id,
    entered.entered_at,
    entered.arm,
    ended.exited_at,
    ended.converted_at,
    ended.completed_at
from entered
left join ended
    on entered.entry_id = ended.entry_id
left join successors
    on entered.person_id = successors.alias_person_id
