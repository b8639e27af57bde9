-- Current consent per person, channel and topic: the latest change wins, with its source and time.
-- A person holds at most one user_id (the anchor), so the user's current consent is the person's.
with

consents as (

    select * from {{ ref('int_user_consents_current') }}

),

identities as (

    select * from {{ ref('dim_identities') }}
    where identifier_type = '{{ identity_config().anchor_type }}'

),

final as (

    select
        identities.person_id,
        consents.channel,
        consents.topic,
        consents.consent_status,
        consents.consent_source,
        consents.recorded_at
    from consents
    inner join identities
        on consents.user_id = identities.identifier_value

)

select * from final
