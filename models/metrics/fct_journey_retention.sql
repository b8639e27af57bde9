-- Value after a journey, against its holdout, by the week people entered: for the people whose
-- entry ended (went past its last step, converted or exited: every ending, so that the arms are
-- not filtered differently, as a cap's exit happens in treatment only), their orders in the
-- revenue window strictly after it ended (a converting purchase is not its own aftermath). A
-- person counts once per journey and cohort week, in the arm of their first entry. A duplicate
-- entry closed because the person was in the journey already (a merge) is no ending: their other
-- entry goes on. Holdout entries walk the journey unsent and end alike.
{%- set window_days = var('metrics')['revenue_window_days'] %}
with

all_entries as (

    select * from {{ ref('fct_journey_entries') }}

),

entries as (

    select
        journey,
        arm,
        current_person_id as person_id,
        cast({{ dbt.date_trunc('week', 'entered_at') }} as date) as cohort_week,
        -- an entry that completed, then converted, ended with its converting purchase
        case when converted_at > ended_at then converted_at else ended_at end as finished_at
    from all_entries
    where ended_at is not null and end_reason <> 'merged'

),

first_arm as (

    -- over every entry, ended or not, as fct_journey_experiments assigns people
    select journey, person_id, arm
    from (
        select
            journey,
            current_person_id as person_id,
            arm,
            row_number() over (
                partition by journey, current_person_id order by entered_at, arm
            ) as nth
        from all_entries
    ) ranked
    where nth = 1

),

finished as (

    -- a person's first finished entry per cohort week, in their first arm
    select
        entries.journey,
        entries.arm,
        entries.cohort_week,
        entries.person_id,
        min(entries.finished_at) as finished_at
    from entries
    inner join first_arm
        on entries.journey = first_arm.journey
        and entries.person_id = first_arm.person_id
        and entries.arm = first_arm.arm
    group by entries.journey, entries.arm, entries.cohort_week, entries.person_id

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
