-- The journey funnel by day: what happened at each step on each day (UTC), by when it happened
-- (a step reached on Monday whose message was opened on Tuesday counts on both days).
{%- set measures = {
    'reached': 'reached_at',
    'sent': 'sent_at',
    'delivered': 'delivered_at',
    'opened': 'opened_at',
    'clicked': 'clicked_at',
    'converted': 'converted_at',
    'went_on': 'went_on_at',
} %}
with

entry_steps as (

    select * from {{ ref('int_journey_entry_steps') }}

),

happenings as (

    {%- for measure, column in measures.items() %}
    select
        journey, journey_version, arm, split_path, step,
        cast({{ column }} as date) as activity_date,
        '{{ measure }}' as measure
    from entry_steps
    where {{ column }} is not null
    union all
    {%- endfor %}
    select
        journey, journey_version, arm, split_path, step,
        cast(ended_here_at as date) as activity_date,
        case when ended_here in ('completed', 'converted') then ended_here || '_here'
            else 'dropped_off' end as measure
    from entry_steps
    where ended_here_at is not null

)

select
    activity_date,
    journey,
    journey_version,
    arm,
    split_path,
    step,
    {%- for measure in measures %}
    count(case when measure = '{{ measure }}' then 1 end) as {{ measure }},
    {%- endfor %}
    count(case when measure = 'completed_here' then 1 end) as completed_here,
    count(case when measure = 'converted_here' then 1 end) as converted_here,
    count(case when measure = 'dropped_off' then 1 end) as dropped_off
from happenings
group by activity_date, journey, journey_version, arm, split_path, step
