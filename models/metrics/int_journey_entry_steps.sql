-- One row per entry and step it reached: when, whether it went on or ended there (and how), what
-- the step sent and what came of it. The funnels count these.
with

entries as (

    select * from {{ ref('fct_journey_entries') }}

),

transitions as (

    select * from {{ ref('fct_journey_transitions') }}

),

reached as (

    -- node names in parentheses are ends, not steps
    select entry_id, node as step, min(seq) as step_order, min(reached_at) as reached_at
    from transitions
    where node not like '(%'
    group by entry_id, node

),

went_on as (

    select entry_id, from_node as step, min(reached_at) as went_on_at
    from transitions
    where from_node is not null and node not like '(%'
    group by entry_id, from_node

),

messages as (

    -- a key of a person id merged away went on under the successor's key: counted there
    select
        deliveries.entry_id,
        deliveries.step,
        min(deliveries.channel) as channel,
        min(deliveries.sent_at) as sent_at,
        min(engagement.delivered_at) as delivered_at,
        min(engagement.first_opened_at) as opened_at,
        min(engagement.first_clicked_at) as clicked_at
    from {{ ref('fct_deliveries') }} as deliveries
    left join {{ ref('fct_message_engagement') }} as engagement
        on deliveries.send_key = engagement.send_key
    where deliveries.delivery_status = 'sent'
    group by deliveries.entry_id, deliveries.step

),

positions as (

    select entry_id, node
    from {{ ref('dim_journey_positions') }}
    where entry_state = 'active'

)

select
    reached.entry_id,
    entries.journey,
    entries.journey_version,
    entries.arm,
    entries.split_path,
    entries.current_person_id,
    reached.step,
    reached.step_order,
    reached.reached_at,
    went_on.went_on_at,
    positions.entry_id is not null as is_here_now,
    case when entries.ended_at_step = reached.step then entries.end_reason end as ended_here,
    case when entries.ended_at_step = reached.step then entries.ended_at end as ended_here_at,
    messages.channel,
    messages.sent_at,
    messages.delivered_at,
    messages.opened_at,
    messages.clicked_at,
    case when entries.converted_at >= reached.reached_at then entries.converted_at end
        as converted_at
from reached
inner join entries
    on reached.entry_id = entries.entry_id
left join went_on
    on reached.entry_id = went_on.entry_id
    and reached.step = went_on.step
left join messages
    on reached.entry_id = messages.entry_id
    and reached.step = messages.step
left join positions
    on reached.entry_id = positions.entry_id
    and reached.step = positions.node
