-- Current consent per person, channel and topic: the latest change wins, with its source and time.
with

consents as (

    select * from {{ ref('stg_preferences__consents') }}
    where reject_reason is null

),

identities as (

    select * from {{ ref('dim_identities') }}
    where identifier_type = '{{ identity_config().anchor_type }}'

),

ranked as (

    select
        identities.person_id,
        consents.channel,
        consents.topic,
        consents.consent_status,
        consents.consent_source,
        consents.recorded_at,
        row_number() over (
            partition by identities.person_id, consents.channel, consents.topic
            order by consents.recorded_at desc, consents.consent_id desc
        ) as recency
    from consents
    inner join identities
        on consents.user_id = identities.identifier_value

)

select
    person_id,
    channel,
    topic,
    consent_status,
    consent_source,
    recorded_at
from ranked
where recency = 1
