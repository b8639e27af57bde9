-- The journey funnel per step and channel: how many were sent, skipped (and why), failed, and how
-- many of those people converted (reached a goal of the journey) after the message.
with

deliveries as (

    select * from {{ ref('fct_deliveries') }}
    -- a key of a person id merged away: its message is counted under the key it went on as
    where not (delivery_status = 'skipped' and reason = 'superseded')

),

entries as (

    select * from {{ ref('fct_journey_entries') }}

),

joined as (

    select
        deliveries.journey,
        deliveries.step,
        deliveries.channel,
        deliveries.delivery_status,
        deliveries.reason,
        deliveries.current_person_id,
        deliveries.sent_at,
        entries.converted_at
    from deliveries
    left join entries
        on deliveries.entry_id = entries.entry_id

),

per_step as (

    select
        journey,
        step,
        coalesce(channel, 'none') as channel,
        count(*) as decisions,
        count(case when delivery_status = 'sent' then 1 end) as sent,
        count(case when delivery_status = 'failed' then 1 end) as failed,
        count(case when delivery_status = 'unknown' then 1 end) as unknown_outcome,
        count(case when delivery_status = 'skipped' then 1 end) as skipped,
        count(case when delivery_status = 'deferred' then 1 end) as deferred,
        {%- for reason in var('delivery')['defer_reasons'] %}
        count(case when delivery_status = 'deferred' and reason = '{{ reason }}' then 1 end)
            as deferred_{{ reason }},
        {%- endfor %}
        {%- for reason in var('delivery')['skip_reasons'] %}
        count(case when delivery_status = 'skipped' and reason = '{{ reason }}' then 1 end)
            as skipped_{{ reason }},
        {%- endfor %}
        count(case when delivery_status = 'failed' and reason = 'outcome_unknown' then 1 end)
            as failed_outcome_unknown,
        count(case when delivery_status = 'failed' and reason = 'attempts_exhausted' then 1 end)
            as failed_attempts_exhausted,
        count(case when delivery_status = 'sent' and converted_at > sent_at then 1 end)
            as converted_after_send,
        -- one human whose ids merged between two sends is one person
        count(distinct current_person_id) as people
    from joined
    group by journey, step, coalesce(channel, 'none')

)

select * from per_step
