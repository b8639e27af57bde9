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

)

select * from holdout
union all
select * from splits
