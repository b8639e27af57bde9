-- Everything heard back about a send, one row per event: the providers' webhooks (SendGrid,
-- Twilio), the in-app inbox's reads and clicks, unsubscribes through a message's link, and FCM's
-- own answer at send time that the device token is dead (UNREGISTERED: the app is gone), which
-- is push's bounce.
with

feedback as (

    select
        event_id,
        send_key,
        provider,
        channel,
        feedback_event,
        occurred_at
    from {{ ref('stg_feedback__events') }}
    where reject_reason is null

),

dead_push_tokens as (

    select
        'fcm:' || send_key as event_id,
        send_key,
        'fcm' as provider,
        channel,
        'bounce' as feedback_event,
        min(recorded_at) as occurred_at
    from {{ ref('stg_ledger__deliveries') }}
    where channel = 'push' and delivery_status = 'failed' and reason = 'dead_push_token'
    group by send_key, channel

),

final as (

    select * from feedback
    union all
    select * from dead_push_tokens

)

select * from final
