-- Every journey's entries, from the engine's transitions: when each began, under which version
-- of the journey, its arm and split paths, and how, when and where it ended (if it has).
with

transitions as (

    select * from {{ ref('fct_journey_transitions') }}

),

entered as (

    select
        entry_id,
        journey,
        coalesce(journey_version, 'unversioned') as journey_version,
        person_id,
        entered_at,
        arm
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

),

first_end as (

    -- how the entry ended first, and at which step (a goal can still convert after completing)
    select
        entry_id,
        from_node as ended_at_step,
        reached_at as ended_at,
        case
            when node = '(converted)' then 'converted'
            when node = '(completed)' then 'completed'
            when detail like 'exit_when:%' then 'exit_criteria'
            when detail like 'exit step %' then 'exit_step'
            when detail like 'capped:%' then 'frequency_cap'
            when detail like 'merged:%' then 'merged'
            when detail = 'no longer in the audience' then 'left_audience'
            else 'exit_event'
        end as end_reason
    from (
        select
            *,
            row_number() over (partition by entry_id order by seq) as nth_end
        from transitions
        where node in ('(completed)', '(exited)', '(converted)')
    ) ends
    where nth_end = 1

),

paths as (

    -- the split paths the entry took so far, as one label ('(none)': no split taken yet); every
    -- step of the entry, before the split too, counts under it, so a path's funnel starts at
    -- the entry (and an entry's label grows as it passes a split)
    select
        entry_id,
        {{ sorted_listagg("experiment || '=' || variant", "', '") }} as split_path
    from {{ ref('fct_journey_exposures') }}
    where experiment <> 'holdout'
    group by entry_id

)

select
    entered.entry_id,
    entered.journey,
    entered.journey_version,
    entered.person_id,
    -- who the person is today, after any merge since (the engine follows them too)
    coalesce(successors.person_id, entered.person_id) as current_person_id,
    entered.entered_at,
    entered.arm,
    coalesce(paths.split_path, '(none)') as split_path,
    ended.exited_at,
    ended.converted_at,
    ended.completed_at,
    first_end.ended_at,
    first_end.end_reason,
    first_end.ended_at_step
from entered
left join ended
    on entered.entry_id = ended.entry_id
left join first_end
    on entered.entry_id = first_end.entry_id
left join paths
    on entered.entry_id = paths.entry_id
left join successors
    on entered.person_id = successors.alias_person_id
