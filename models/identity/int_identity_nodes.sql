-- One row per usable identifier (a node of the identity graph) with how many anchors (user_ids)
-- it was seen with and whether that makes it a shared identifier. An incremental run keeps
-- existing node ids and numbers new nodes after them.
{%- set cfg = identity_config() %}
{%- set limits = cfg.max_anchors_per_identifier %}
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }}
    where excluded_reason is null

),

affected as (

    select distinct identifier_key
    from occurrences
    where {{ identity_new_batch('occurrences') }}

),

nodes as (

    select
        occurrences.identifier_key,
        occurrences.identifier_type,
        occurrences.identifier_value,
        min(occurrences.occurred_at) as first_seen_at,
        max(occurrences.occurred_at) as last_seen_at,
        -- one row per (occurrence, identifier): a plain count is the number of occurrences
        count(*) as occurrence_count
    from occurrences
    {{- identity_scope_join('occurrences', 'affected', 'identifier_key') }}
    group by occurrences.identifier_key, occurrences.identifier_type, occurrences.identifier_value

),

anchor_counts as (

    select anchor_links.identifier_key, count(*) as anchor_count
    from {{ ref('int_identity_anchor_links') }} as anchor_links
    {{- identity_scope_join('anchor_links', 'affected', 'identifier_key') }}
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
            existing.node_id,
            (select coalesce(max(node_id), 0) from {{ this }})
            + row_number() over (
                partition by existing.node_id is null
                order by classified.first_seen_at, classified.identifier_key
            )
        ) as node_id,
        classified.*
    from classified
    left join {{ this }} as existing
        on classified.identifier_key = existing.identifier_key
    {%- else %}
    -- Unordered: node ids are internal labels (person ids come from the oldest identifier), and
    -- sorting 10M rows here would cost more than the rest of this model.
    select
        row_number() over () as node_id,
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
        {{ identity_batch_stamp() }} as processed_at
    from numbered

)

select * from final
