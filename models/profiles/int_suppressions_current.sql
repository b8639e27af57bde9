-- The addresses suppressed now, per channel and scope: the latest usable change per address,
-- channel and scope wins (an unsubscribe after a hard bounce does not lift the bounce). A view
-- on purpose, like int_user_consents_current: the send-time guard reads it right before
-- sending, so a bounce or a STOP landed a second ago stops the next message.
with

changes as (

    select * from {{ ref('stg_preferences__suppressions') }}
    where reject_reason is null

),

ranked as (

    select
        channel,
        address,
        suppression_status,
        scope,
        reason,
        suppression_source,
        recorded_at,
        row_number() over (
            partition by channel, address, scope
            order by recorded_at desc, suppression_id desc
        ) as recency
    from changes

)

select
    channel,
    address,
    scope,
    reason,
    suppression_source,
    recorded_at
from ranked
where recency = 1 and suppression_status = 'suppressed'
