-- One row per in-app inbox message, with when it was first read and clicked in the app.
with

messages as (

    select * from {{ ref('stg_inbox__messages') }}
    where reject_reason is null

),

engagement as (

    select * from {{ ref('fct_message_engagement') }}

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
        engagement.first_opened_at as read_at,
        engagement.first_clicked_at as clicked_at,
        engagement.first_opened_at is not null as is_read,
        engagement.first_clicked_at is not null as is_clicked
    from messages
    left join engagement
        on messages.send_key = engagement.send_key

)

select * from final
