-- Value after a journey, against its holdout, by the week people entered: for the people whose
-- entry finished (went past its last step or reached a goal), their orders in the revenue window
-- strictly after it finished (a converting purchase is not its own aftermath). Holdout entries
-- walk the journey unsent and finish alike.
{%- set window_days = var('metrics')['revenue_window_days'] %}
with

finished as (

    -- a person's first finished entry per journey, arm and cohort week
    select
        journey,
        arm,
        cast({{ dbt.date_trunc('week', 'entered_at') }} as date) as cohort_week,
        current_person_id as person_id,
        -- an entry that completed, then converted, finished with its converting purchase
        min(case when converted_at > ended_at then converted_at else ended_at end) as finished_at
    from {{ ref('fct_journey_entries') }}
    where end_reason in ('completed', 'converted')
    group by journey, arm, cast({{ dbt.date_trunc('week', 'entered_at') }} as date), current_person_id

),

per_person as (

    select
        finished.journey,
        finished.arm,
        finished.cohort_week,
        finished.person_id,
        count(orders.order_id) as orders,
        coalesce(sum(orders.order_total), 0) as revenue
    from finished
    left join {{ ref('int_orders_attributed') }} as orders
        on finished.person_id = orders.person_id
        and orders.ordered_at > finished.finished_at
        and orders.ordered_at < {{ dbt.dateadd('day', window_days, 'finished.finished_at') }}
    group by finished.journey, finished.arm, finished.cohort_week, finished.person_id

)

select
    journey,
    arm,
    cohort_week,
    count(*) as people,
    count(case when orders >= 1 then 1 end) as buyers,
    count(case when orders >= 2 then 1 end) as repeat_buyers,
    sum(orders) as orders,
    sum(revenue) as revenue,
    {{ safe_ratio('sum(revenue)', 'count(*)') }} as revenue_per_person,
    {{ safe_ratio('count(case when orders >= 1 then 1 end)', 'count(*)') }} as buyer_rate,
    {{ safe_ratio('count(case when orders >= 2 then 1 end)', 'count(*)') }} as repeat_buyer_rate
from per_person
group by journey, arm, cohort_week
