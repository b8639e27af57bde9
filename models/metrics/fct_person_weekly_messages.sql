-- Messages each person received per week (UTC weeks, Monday first) across every journey and
-- channel: the frequency people actually experience. People who got nothing that week have no row.
with

sent as (

    select
        current_person_id as person_id,
        cast({{ dbt.date_trunc('week', 'sent_at') }} as date) as week,
        journey,
        channel
    from {{ ref('fct_deliveries') }}
    where delivery_status = 'sent'

)

select
    person_id,
    week,
    count(*) as messages,
    count(distinct journey) as journeys,
    {%- for channel in ['email', 'sms', 'push', 'in_app', 'webhook'] %}
    count(case when channel = '{{ channel }}' then 1 end) as {{ channel }}_messages{{ ',' if not loop.last }}
    {%- endfor %}
from sent
group by person_id, week
