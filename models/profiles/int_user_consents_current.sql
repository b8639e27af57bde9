-- The latest usable consent change per user_id, channel and topic: the one definition of current
-- consent. A view on purpose: the send-time guard (activations/warehouse.py) reads it right
-- before sending, so it must answer from the landing files as they are at query time.
with

consents as (

    select * from {{ ref('stg_preferences__consents') }}
    where reject_reason is null

),

ranked as (

    select
        user_id,
        channel,
        topic,
        consent_status,
        consent_source,
        recorded_at,
        row_number() over (
            partition by user_id, channel, topic
            order by recorded_at desc, consent_id desc
        ) as recency
    from consents

),

final as (

    select
        user_id,
        channel,
        topic,
        consent_status,
        consent_source,
        recorded_at
    from ranked
    where recency = 1

)

select * from final
