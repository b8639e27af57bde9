-- Each conversion's credit shared among the messages its entry was sent before it converted:
-- first touch, last touch, linear and time-decay (a touch half-life hours before the conversion
-- counts half as much as one at that moment). Every model's credits of a conversion add up to 1,
-- so per journey they sum to its conversions; a conversion no message preceded (a holdout's, or
-- one before the first send) is one row with no send_key and step '(no message)'.
{%- set half_life_hours = var('metrics')['attribution_half_life_hours'] %}
with

conversions as (

    select entry_id, journey, journey_version, arm, split_path, current_person_id, converted_at
    from {{ ref('fct_journey_entries') }}
    where converted_at is not null

),

touches as (

    select
        conversions.entry_id,
        deliveries.send_key,
        deliveries.step,
        deliveries.channel,
        deliveries.sent_at,
        {{ dbt.datediff('deliveries.sent_at', 'conversions.converted_at', 'second') }} as age_seconds
    from conversions
    inner join {{ ref('fct_deliveries') }} as deliveries
        on conversions.entry_id = deliveries.entry_id
        and deliveries.delivery_status = 'sent'
        and deliveries.sent_at <= conversions.converted_at

),

weighted as (

    -- 0.5 ^ (age / half-life), scaled by the newest touch's (the scale cancels out when
    -- normalized, and keeps the weights from underflowing)
    select
        *,
        power(
            0.5,
            (age_seconds - min(age_seconds) over (partition by entry_id))
                / ({{ half_life_hours }} * 3600.0)
        ) as decay_weight
    from touches

),

ranked as (

    select
        *,
        row_number() over (partition by entry_id order by sent_at, send_key) as nth_first,
        row_number() over (partition by entry_id order by sent_at desc, send_key desc) as nth_last,
        count(*) over (partition by entry_id) as touches,
        sum(decay_weight) over (partition by entry_id) as decay_total
    from weighted

),

credited as (

    select
        entry_id,
        send_key,
        step,
        channel,
        sent_at,
        touches,
        cast(case when nth_first = 1 then 1 else 0 end as {{ metric_float() }}) as first_touch_credit,
        cast(case when nth_last = 1 then 1 else 0 end as {{ metric_float() }}) as last_touch_credit,
        cast(1 as {{ metric_float() }}) / touches as linear_credit,
        -- the newest touch weighs 1, so the total is at least 1
        cast(decay_weight / decay_total as {{ metric_float() }}) as time_decay_credit
    from ranked

    union all

    select
        conversions.entry_id,
        cast(null as {{ dbt.type_string() }}) as send_key,
        '(no message)' as step,
        cast(null as {{ dbt.type_string() }}) as channel,
        cast(null as {{ dbt.type_timestamp() }}) as sent_at,
        0 as touches,
        cast(1 as {{ metric_float() }}) as first_touch_credit,
        cast(1 as {{ metric_float() }}) as last_touch_credit,
        cast(1 as {{ metric_float() }}) as linear_credit,
        cast(1 as {{ metric_float() }}) as time_decay_credit
    from conversions
    where not exists (select 1 from touches where touches.entry_id = conversions.entry_id)

)

select
    conversions.journey,
    conversions.journey_version,
    conversions.arm,
    conversions.split_path,
    credited.entry_id,
    conversions.current_person_id,
    conversions.converted_at,
    credited.send_key,
    credited.step,
    credited.channel,
    credited.sent_at,
    credited.touches,
    credited.first_touch_credit,
    credited.last_touch_credit,
    credited.linear_credit,
    credited.time_decay_credit
from credited
inner join conversions
    on credited.entry_id = conversions.entry_id
