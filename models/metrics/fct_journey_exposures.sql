-- Experiment exposures: the holdout assignment of each entry and each split path taken, so
-- lift and A/B results compare like with like.
with

transitions as (

    select * from {{ ref('fct_journey_transitions') }}

),

holdout as (

    select
        journey,
        entry_id,
        person_id,
        'holdout' as experiment,
        arm as variant,
        reached_at as exposed_at
    from transitions
    where reason = 'entered'

),

splits as (

    select
        journey,
        entry_id,
        person_id,
        from_node as experiment,
        detail as variant,
        reached_at as exposed_at
    from transitions
    where reason = 'split'

),

unioned as (

    select * from holdout
    union all
    select * from splits

)

-- A split met again (a journey that loops) keeps its first assignment: the hash is the same.
select journey, entry_id, person_id, experiment, variant, exposed_at
from (
    select
        *,
        row_number() over (partition by entry_id, experiment order by exposed_at) as exposure
    from unioned
) ranked
where exposure = 1
