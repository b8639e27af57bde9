-- Each experiment arm against its baseline: the holdout (treatment against holdout) and each
-- split (its paths against the path named control, else the first by name), with people,
-- conversions and revenue per person, and the lift with its 95% interval. The unit is the person
-- (by their id today), in the arm they were first exposed to (a merge can bring one human into
-- both), counted by their exposures there only. Intention to treat: a person converted when a
-- goal event of the journey happened within its window after one of their exposures, whatever the journey did with them meanwhile (an
-- entry that exited, capped or unopened, still counts its later purchase), the same in every
-- arm. A journey no longer declared counts the conversions its engine recorded. Splits compare
-- treatment entries only: holdout entries walk the splits too, unsent.
{%- set m = var('metrics') %}
with

exposed as (

    select
        exposures.journey,
        exposures.experiment,
        exposures.variant,
        entries.current_person_id as person_id,
        exposures.exposed_at,
        entries.converted_at
    from {{ ref('fct_journey_exposures') }} as exposures
    inner join {{ ref('fct_journey_entries') }} as entries
        on exposures.entry_id = entries.entry_id
    where exposures.experiment = 'holdout' or entries.arm = 'treatment'

),

first_arm as (

    -- the arm a person was first exposed to (ties: the variant first by name), and when
    select journey, experiment, variant, person_id, first_exposed_at
    from (
        select
            *,
            row_number() over (
                partition by journey, experiment, person_id order by first_exposed_at, variant
            ) as nth
        from (
            select journey, experiment, variant, person_id, min(exposed_at) as first_exposed_at
            from exposed
            group by journey, experiment, variant, person_id
        ) per_arm
    ) ranked
    where nth = 1

),

goals as (

    {{ journey_goals() }}

),

successors as (

    {{ person_successors() }}

),

goal_events as (

    select
        coalesce(successors.person_id, events.person_id) as person_id,
        events.event_name,
        events.occurred_at
    from {{ ref('int_events_stitched') }} as events
    left join successors
        on events.person_id = successors.alias_person_id
    where events.event_type = 'track'
        and events.event_name in (select goal_event from goals)

),

conversions as (

    -- people who converted in an arm, by its exposures: a goal event in its window
    select exposed.journey, exposed.experiment, exposed.variant, exposed.person_id
    from exposed
    inner join goals
        on exposed.journey = goals.journey
    inner join goal_events
        on exposed.person_id = goal_events.person_id
        and goal_events.event_name = goals.goal_event
        and goal_events.occurred_at >= exposed.exposed_at
        and {{ dbt.datediff('exposed.exposed_at', 'goal_events.occurred_at', 'second') }}
            <= goals.within_hours * 3600

    union

    -- journeys without declared goals now: what the engine recorded
    select journey, experiment, variant, person_id
    from exposed
    where converted_at is not null
        and journey not in (select journey from goals)

),

people as (

    -- one row per person in their arm: converted there, and their revenue in the window
    select
        first_arm.journey,
        first_arm.experiment,
        first_arm.variant,
        first_arm.person_id,
        max(case when conversions.person_id is not null then 1 else 0 end) as converted,
        coalesce(sum(orders.order_total), 0) as revenue
    from first_arm
    left join conversions
        on first_arm.journey = conversions.journey
        and first_arm.experiment = conversions.experiment
        and first_arm.variant = conversions.variant
        and first_arm.person_id = conversions.person_id
    left join {{ ref('int_orders_attributed') }} as orders
        on first_arm.person_id = orders.person_id
        and orders.ordered_at >= first_arm.first_exposed_at
        and orders.ordered_at < {{ dbt.dateadd('day', m['revenue_window_days'], 'first_arm.first_exposed_at') }}
    group by first_arm.journey, first_arm.experiment, first_arm.variant, first_arm.person_id

),

arms as (

    select
        journey,
        experiment,
        variant,
        count(*) as people,
        sum(converted) as conversions,
        sum(revenue) as revenue,
        avg(revenue) as revenue_per_person,
        coalesce(var_samp(revenue), 0) as revenue_variance
    from people
    group by journey, experiment, variant

),

baselines as (

    -- an experiment has two arms at least (a journey without a holdout has no experiment)
    select journey, experiment, variant as baseline_variant
    from (
        select
            journey,
            experiment,
            variant,
            row_number() over (
                partition by journey, experiment
                order by
                    case when variant = case when experiment = 'holdout' then 'holdout'
                        else 'control' end then 0 else 1 end,
                    variant
            ) as nth,
            count(*) over (partition by journey, experiment) as variants
        from arms
    ) ranked
    where nth = 1 and variants > 1

),

compared as (

    select
        arms.*,
        baselines.baseline_variant,
        arms.variant = baselines.baseline_variant as is_baseline,
        base.people as baseline_people,
        base.conversions as baseline_conversions,
        base.revenue_per_person as baseline_revenue_per_person,
        base.revenue_variance as baseline_revenue_variance
    from arms
    inner join baselines
        on arms.journey = baselines.journey
        and arms.experiment = baselines.experiment
    inner join arms as base
        on base.journey = baselines.journey
        and base.experiment = baselines.experiment
        and base.variant = baselines.baseline_variant

)

select
    journey,
    experiment,
    variant,
    is_baseline,
    baseline_variant,
    people,
    conversions,
    {{ safe_ratio('conversions', 'people') }} as conversion_rate,
    revenue,
    revenue_per_person,
    baseline_people,
    baseline_conversions,
    {{ safe_ratio('baseline_conversions', 'baseline_people') }} as baseline_conversion_rate,
    baseline_revenue_per_person,
    -- conversion: absolute lift with Newcombe's interval, relative lift with Katz's
    case when not is_baseline then
        {{ safe_ratio('conversions', 'people') }} - {{ safe_ratio('baseline_conversions', 'baseline_people') }}
    end as conversion_lift,
    case when not is_baseline then
        {{ newcombe_bound('conversions', 'people', 'baseline_conversions', 'baseline_people', -1) }}
    end as conversion_lift_low,
    case when not is_baseline then
        {{ newcombe_bound('conversions', 'people', 'baseline_conversions', 'baseline_people', 1) }}
    end as conversion_lift_high,
    {%- for side, name in [(0, ''), (-1, '_low'), (1, '_high')] %}
    case when not is_baseline then
        {{ risk_ratio_bound('conversions', 'people', 'baseline_conversions', 'baseline_people', side) }} - 1
    end as conversion_relative_lift{{ name }},
    {%- endfor %}
    -- revenue per person: difference of means, normal approximation with Welch's standard error
    {%- for side, name in [(0, ''), (-1, '_low'), (1, '_high')] %}
    case when not is_baseline then
        {{ mean_difference_bound('revenue_per_person', 'revenue_variance', 'people',
            'baseline_revenue_per_person', 'baseline_revenue_variance', 'baseline_people', side) }}
    end as revenue_per_person_lift{{ name }},
    {%- endfor %}
    -- readable: every interval above leans on the normal approximation
    (
        people >= {{ m['min_people_per_arm'] }}
        and baseline_people >= {{ m['min_people_per_arm'] }}
        and conversions >= 10 and people - conversions >= 10
        and baseline_conversions >= 10 and baseline_people - baseline_conversions >= 10
    ) as is_readable
from compared
