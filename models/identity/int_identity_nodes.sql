-- One row per usable identifier (a node of the identity graph) with how many anchors (user_ids)
-- it was seen with and whether that makes it a shared identifier. Incremental: identifiers in the
-- new batch get their counts and times updated (existing node ids kept, new ones numbered after).
{%- set cfg = identity_config() %}
{%- set limits = cfg.max_anchors_per_identifier %}
with

batch as (

    select * from {{ ref('int_identifier_occurrences') }} as batch
    where batch.excluded_reason is null and {{ identity_new_batch('batch') }}

),

batch_nodes as (

    select
        identifier_key,
        identifier_type,
        substr(identifier_key, length(identifier_type) + 2) as identifier_value,
        first_seen_at,
        last_seen_at,
        occurrence_count
    from (
        select
            identifier_key,
            identifier_type,
            min(occurred_at) as first_seen_at,
            max(occurred_at) as last_seen_at,
            -- one row per (occurrence, identifier): a plain count is the number of occurrences
            count(*) as occurrence_count
        from batch
        group by identifier_key, identifier_type
    ) as grouped

),

nodes as (

    {%- if is_incremental() %}
    -- the new batch's occurrences added to what was known of the identifier
    select
        batch_nodes.identifier_key,
        batch_nodes.identifier_type,
        batch_nodes.identifier_value,
        case
            when known.first_seen_at < batch_nodes.first_seen_at then known.first_seen_at
            else batch_nodes.first_seen_at
        end as first_seen_at,
        case
            when known.last_seen_at > batch_nodes.last_seen_at then known.last_seen_at
            else batch_nodes.last_seen_at
        end as last_seen_at,
        batch_nodes.occurrence_count + coalesce(known.occurrence_count, 0) as occurrence_count,
        known.node_id as known_node_id
    from batch_nodes
    left join {{ this }} as known
        on batch_nodes.identifier_key = known.identifier_key
    {%- else %}
    select batch_nodes.*, cast(null as {{ dbt.type_bigint() }}) as known_node_id
    from batch_nodes
    {%- endif %}

),

anchor_counts as (

    select anchor_links.identifier_key, count(*) as anchor_count
    from {{ ref('int_identity_anchor_links') }} as anchor_links
    where {{ identity_in_scope('anchor_links.identifier_key', 'select identifier_key from batch_nodes') }}
    group by anchor_links.identifier_key

),

classified as (

    select
        nodes.*,
        coalesce(anchor_counts.anchor_count, 0) as anchor_count,
        {%- set per_type = limits.items() | rejectattr(0, 'equalto', 'default') | list %}
        {%- if per_type %}
        case nodes.identifier_type
            {%- for t, n in per_type %}
            when '{{ t }}' then {{ n | int }}
            {%- endfor %}
            else {{ limits.get('default', 5) | int }}
        end
        {%- else %}
        {{ limits.get('default', 5) | int }}
        {%- endif %} as anchor_limit,
        nodes.identifier_type = '{{ cfg.anchor_type }}' as is_anchor
    from nodes
    left join anchor_counts
        on nodes.identifier_key = anchor_counts.identifier_key

),

numbered as (

    {%- if is_incremental() %}
    select
        coalesce(
            known_node_id,
            (select coalesce(max(node_id), 0) from {{ this }})
            + row_number() over (
                partition by known_node_id is null
                order by first_seen_at, identifier_key
            )
        ) as node_id,
        classified.*
    from classified
    {%- else %}
    -- Unordered: node ids are internal labels (person ids come from the oldest identifier), and
    -- sorting 10M rows here would cost more than the rest of this model.
    select
        {{ unordered_row_number() }} as node_id,
        classified.*
    from classified
    {%- endif %}

),

final as (

    select
        node_id,
        identifier_key,
        identifier_type,
        identifier_value,
        first_seen_at,
        last_seen_at,
        occurrence_count,
        anchor_count,
        anchor_limit,
        is_anchor,
        not is_anchor and anchor_count > anchor_limit as is_shared,
        not is_anchor and anchor_count <= anchor_limit as is_mergeable,
        {{ run_batch_stamp() }} as processed_at
    from numbered

)

select * from final
