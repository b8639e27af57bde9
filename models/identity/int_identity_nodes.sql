-- One row per usable identifier (a node of the identity graph), numbered oldest first, with how
-- many anchors (user_ids) it was seen with and whether that makes it a shared identifier.
{%- set cfg = identity_config() %}
{%- set limits = cfg.max_anchors_per_identifier %}
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }}
    where excluded_reason is null

),

nodes as (

    select
        identifier_key,
        identifier_type,
        identifier_value,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(distinct occurrence_id) as occurrence_count
    from occurrences
    group by identifier_key, identifier_type, identifier_value

),

anchor_counts as (

    select
        other.identifier_key,
        count(distinct anchor.identifier_key) as anchor_count
    from occurrences as other
    inner join occurrences as anchor
        on other.occurrence_id = anchor.occurrence_id
        and anchor.identifier_type = '{{ cfg.anchor_type }}'
    where other.identifier_type <> '{{ cfg.anchor_type }}'
    group by other.identifier_key

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

final as (

    select
        row_number() over (order by first_seen_at, identifier_key) as node_id,
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
        not is_anchor and anchor_count <= anchor_limit as is_mergeable
    from classified

)

select * from final
