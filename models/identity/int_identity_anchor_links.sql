-- Which anchors (user_ids) each non-anchor identifier appeared with, and when first. Computed
-- once: the nodes count these links to find shared identifiers, the resolution follows them.
-- Incremental: links from the new batch of occurrences, merged into the ones already known.
{%- set cfg = identity_config() %}
with

batch as {{ materialized_cte() }} (

    select batch.occurrence_id, batch.identifier_type, batch.identifier_key, batch.occurred_at
    from {{ ref('int_identifier_occurrences') }} as batch
    where batch.excluded_reason is null and {{ identity_new_batch('batch') }}

),

others as (

    select occurrence_id, identifier_key, occurred_at
    from batch
    where identifier_type <> '{{ cfg.anchor_type }}'

),

anchors as (

    select occurrence_id, identifier_key
    from batch
    where identifier_type = '{{ cfg.anchor_type }}'

),

batch_links as (

    select
        others.identifier_key,
        anchors.identifier_key as anchor_key,
        min(others.occurred_at) as first_linked_at
    from others
    inner join anchors
        on others.occurrence_id = anchors.occurrence_id
    group by others.identifier_key, anchors.identifier_key

),

links as (

    {%- if is_incremental() %}
    select
        batch_links.identifier_key,
        batch_links.anchor_key,
        -- a late occurrence can move a known link earlier
        case
            when known.first_linked_at < batch_links.first_linked_at then known.first_linked_at
            else batch_links.first_linked_at
        end as first_linked_at
    from batch_links
    left join {{ this }} as known
        on batch_links.identifier_key = known.identifier_key
        and batch_links.anchor_key = known.anchor_key
    {%- else %}
    select * from batch_links
    {%- endif %}

)

select
    identifier_key,
    anchor_key,
    first_linked_at,
    {{ run_batch_stamp() }} as processed_at
from links
