-- The journey funnel per journey, version, arm, split path and step, all time: how many entries
-- reached each step, what it sent and what came of it, and how many left there and why.
with

entry_steps as (

    select * from {{ ref('int_journey_entry_steps') }}

),

cohorts as (

    select journey, journey_version, arm, split_path, count(*) as entries
    from {{ ref('fct_journey_entries') }}
    group by journey, journey_version, arm, split_path

),

per_step as (

    select
        journey,
        journey_version,
        arm,
        split_path,
        step,
        min(step_order) as step_order,
        count(*) as reached,
        count(distinct current_person_id) as people,
        count(sent_at) as sent,
        count(delivered_at) as delivered,
        count(opened_at) as opened,
        count(clicked_at) as clicked,
        count(converted_at) as converted,
        count(went_on_at) as went_on,
        count(case when is_here_now then 1 end) as here_now,
        count(case when ended_here = 'completed' then 1 end) as completed_here,
        count(case when ended_here = 'converted' then 1 end) as converted_here,
        {%- for reason in var('metrics')['exit_reasons'] %}
        count(case when ended_here = '{{ reason }}' then 1 end) as exited_{{ reason }},
        {%- endfor %}
        count(case when ended_here not in ('completed', 'converted') then 1 end) as dropped_off
    from entry_steps
    group by journey, journey_version, arm, split_path, step

)

select
    per_step.journey,
    per_step.journey_version,
    per_step.arm,
    per_step.split_path,
    per_step.step,
    per_step.step_order,
    cohorts.entries,
    {%- for column in ['reached', 'people', 'sent', 'delivered', 'opened', 'clicked', 'converted',
                       'went_on', 'here_now', 'completed_here', 'converted_here', 'dropped_off'] %}
    per_step.{{ column }},
    {%- endfor %}
    {%- for reason in var('metrics')['exit_reasons'] %}
    per_step.exited_{{ reason }},
    {%- endfor %}
    {{ safe_ratio('per_step.reached', 'cohorts.entries') }} as reach_rate,
    {{ safe_ratio('per_step.dropped_off', 'per_step.reached') }} as drop_off_rate,
    {{ safe_ratio('per_step.converted', 'per_step.reached') }} as conversion_rate
from per_step
inner join cohorts
    on per_step.journey = cohorts.journey
    and per_step.journey_version = cohorts.journey_version
    and per_step.arm = cohorts.arm
    and per_step.split_path = cohorts.split_path
