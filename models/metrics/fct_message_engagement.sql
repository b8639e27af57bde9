-- One row per send key that anything was heard back about: when it was delivered, first opened
-- and clicked, bounced, unsubscribed from or reported as spam, and how many opens and clicks.
with

events as (

    select * from {{ ref('int_message_feedback') }}

),

final as (

    select
        send_key,
        min(channel) as channel,
        min(case when feedback_event = 'delivered' then occurred_at end) as delivered_at,
        -- a click counts as an open: the message was opened to click it
        min(case when feedback_event in ('open', 'click') then occurred_at end) as first_opened_at,
        min(case when feedback_event = 'click' then occurred_at end) as first_clicked_at,
        min(case when feedback_event in ('bounce', 'dropped', 'undelivered', 'failed')
            then occurred_at end) as delivery_failed_at,
        min(case when feedback_event = 'unsubscribe' then occurred_at end) as unsubscribed_at,
        min(case when feedback_event = 'spamreport' then occurred_at end) as spam_reported_at,
        count(case when feedback_event = 'open' then 1 end) as opens,
        count(case when feedback_event = 'click' then 1 end) as clicks,
        max(occurred_at) as last_heard_at
    from events
    group by send_key

)

select * from final
