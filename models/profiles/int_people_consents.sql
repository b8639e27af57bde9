-- Marketing consent per person, one column per channel (the journeys' view of dim_people_consents).
with

consents as (

    select * from {{ ref('dim_people_consents') }}
    where topic = 'marketing'

),

pivoted as (

    select
        person_id,
        {% for channel in ['email', 'sms', 'push'] %}
        max(case when channel = '{{ channel }}' then consent_status end) as {{ channel }}_consent,
        max(case when channel = '{{ channel }}' then recorded_at end) as {{ channel }}_consent_at,
        max(case when channel = '{{ channel }}' then consent_source end) as {{ channel }}_consent_source{{ ',' if not loop.last }}
        {% endfor %}
    from consents
    group by person_id

)

select * from pivoted
