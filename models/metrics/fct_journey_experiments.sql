-- Each experiment arm against its baseline: the holdout (treatment against holdout) and each
-- split (its paths against the path named control, else the first by name), with people,
-- conversions and revenue per person, and the lift with its 95% interval. The unit is the person
-- (by their id today): a person converted in an arm when one of their entries there reached a
-- goal. Splits compare treatment entries only: holdout entries walk the splits too, unsent.
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

people as (

    select
        journey,
        experiment,
        variant,
        person_id,
        min(exposed_at) as first_exposed_at,
        max(case when converted_at is not null then 1 else 0 end) as converted
    from exposed
    group by journey, experiment, variant, person_id

),

revenue as (

    select
        people.journey,
        people.experiment,
        people.variant,
        people.person_id,
        coalesce(sum(orders.order_total), 0) as revenue
    from people
    left join {{ ref('int_orders_attributed') }} as orders
        on people.person_id = orders.person_id
        and orders.ordered_at >= people.first_exposed_at
        and orders.ordered_at < {{ dbt.dateadd('day', m['revenue_window_days'], 'people.first_exposed_at') }}
    group by people.journey, people.experiment, people.variant, people.person_id

),

arms as (

    select
        people.journey,
        people.experiment,
        people.variant,
        count(*) as people,
        sum(people.converted) as conversions,
        sum(revenue.revenue) as revenue,
        avg(revenue.revenue) as revenue_per_person,
        coalesce(var_samp(revenue.revenue), 0) as revenue_variance
    from people
    inner join revenue
        on people.journey = revenue.journey
        and people.experiment = revenue.experiment
        and people.variant = revenue.variant
        and people.person_id = revenue.person_id
    group by people.journey, people.experiment, people.variant

),

baselines as (

    select journey, experiment, variant as baseline_variant
    from (
        select
            journey,
            experiment,
            variant,
            row_number() over (
                partition by journey, experiment
                order by case when variant in ('holdout', 'control') then 0 else 1 end, variant
            ) as nth
        from arms
    ) ranked
    where nth = 1

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
