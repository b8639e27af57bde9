-- Deliverability and engagement per channel, journey and week (the week a message was decided or
-- sent), and how often the frequency cap and quiet hours held messages back.
with

deliveries as (

    select * from {{ ref('fct_deliveries') }}
    where not (delivery_status = 'skipped' and reason = 'superseded')

),

held_back as (

    -- a deferral is a ledger line; the key's final status is in fct_deliveries
    select
        send_key,
        max(case when reason = 'capped' then 1 else 0 end) as held_by_cap,
        max(case when reason = 'quiet_hours' then 1 else 0 end) as held_by_quiet_hours
    from {{ ref('stg_ledger__deliveries') }}
    where delivery_status = 'deferred'
    group by send_key

),

joined as (

    select
        cast({{ dbt.date_trunc('week', 'coalesce(deliveries.sent_at, deliveries.decided_at)') }} as date)
            as week,
        deliveries.journey,
        coalesce(deliveries.channel, 'none') as channel,
        deliveries.delivery_status,
        deliveries.reason,
        engagement.delivered_at,
        engagement.first_opened_at,
        engagement.first_clicked_at,
        engagement.delivery_failed_at,
        engagement.unsubscribed_at,
        engagement.spam_reported_at,
        coalesce(held_back.held_by_cap, 0) as held_by_cap,
        coalesce(held_back.held_by_quiet_hours, 0) as held_by_quiet_hours
    from deliveries
    left join {{ ref('fct_message_engagement') }} as engagement
        on deliveries.send_key = engagement.send_key
    left join held_back
        on deliveries.send_key = held_back.send_key

),

per_week as (

    select
        week,
        journey,
        channel,
        count(*) as decisions,
        count(case when delivery_status = 'sent' then 1 end) as sent,
        count(case when delivery_status = 'failed' then 1 end) as failed,
        count(case when delivery_status = 'sent' and delivered_at is not null then 1 end) as delivered,
        count(case when delivery_status = 'sent' and delivery_failed_at is not null then 1 end)
            as bounced,
        count(case when delivery_status = 'sent' and first_opened_at is not null then 1 end) as opened,
        count(case when delivery_status = 'sent' and first_clicked_at is not null then 1 end) as clicked,
        count(case when unsubscribed_at is not null then 1 end) as unsubscribed,
        count(case when spam_reported_at is not null then 1 end) as spam_reports,
        sum(held_by_cap) as held_by_cap,
        sum(held_by_quiet_hours) as held_by_quiet_hours,
        count(case when delivery_status = 'skipped' and reason = 'capped' then 1 end) as skipped_capped,
        count(case when delivery_status = 'deferred' then 1 end) as deferred_now
    from joined
    group by week, journey, channel

)

select
    *,
    {{ safe_ratio('sent - bounced', 'sent + failed') }} as deliverability_rate,
    {{ safe_ratio('opened', 'sent') }} as open_rate,
    {{ safe_ratio('clicked', 'sent') }} as click_rate,
    {{ safe_ratio('clicked', 'opened') }} as click_to_open_rate,
    {{ safe_ratio('unsubscribed', 'sent') }} as unsubscribe_rate
from per_week
