-- Current marketing consent per person and channel: the latest change wins.
with

consents as (

    select * from {{ ref('stg_preferences__consents') }}
    where reject_reason is null and topic = 'marketing'

),

identities as (

    select * from {{ ref('dim_identities') }}
    where identifier_type = 'user_id'

),

latest as (

    select
        identities.person_id,
        consents.channel,
        consents.consent_status,
        consents.consent_source,
        consents.recorded_at,
        row_number() over (
            partition by identities.person_id, consents.channel
            order by consents.recorded_at desc, consents.consent_id desc
        ) as recency
    from consents
    inner join identities
        on consents.user_id = identities.identifier_value

),

pivoted as (

    select
        person_id,
        {% for channel in ['email', 'sms', 'push'] %}
        max(case when channel = '{{ channel }}' then consent_status end) as {{ channel }}_consent,
        max(case when channel = '{{ channel }}' then recorded_at end) as {{ channel }}_consent_at,
        max(case when channel = '{{ channel }}' then consent_source end) as {{ channel }}_consent_source{{ ',' if not loop.last }}
        {% endfor %}
    from latest
    where recency = 1
    group by person_id

)

select * from pivoted
