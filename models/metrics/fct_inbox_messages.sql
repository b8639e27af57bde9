-- One row per in-app inbox message, with when it was first read and clicked in the app.
with

messages as (

    select * from {{ ref('stg_inbox__messages') }}
    where reject_reason is null

),

engagement as (

    select
        send_key,
        -- a click counts as a read: the user opened the message to click it
        min(case when feedback_event in ('open', 'click') then occurred_at end) as read_at,
        min(case when feedback_event = 'click' then occurred_at end) as clicked_at
    from {{ ref('stg_feedback__events') }}
    where provider = 'inbox' and reject_reason is null
    group by send_key

),

final as (

    select
        messages.send_key,
        messages.user_id,
        messages.journey,
        messages.step,
        messages.title,
        messages.body,
        messages.created_at,
        engagement.read_at,
        engagement.clicked_at,
        engagement.read_at is not null as is_read,
        engagement.clicked_at is not null as is_clicked
    from messages
    left join engagement
        on messages.send_key = engagement.send_key

)

select * from final
