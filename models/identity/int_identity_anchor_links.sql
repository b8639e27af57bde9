-- Which anchors (user_ids) each mergeable identifier was seen with, oldest link first.
{%- set cfg = identity_config() %}
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }}
    where excluded_reason is null

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

links as (

    select
        other.identifier_key,
        anchor.identifier_key as anchor_key,
        min(other.occurred_at) as first_linked_at
    from occurrences as other
    inner join occurrences as anchor
        on other.occurrence_id = anchor.occurrence_id
        and anchor.identifier_type = '{{ cfg.anchor_type }}'
    where other.identifier_type <> '{{ cfg.anchor_type }}'
    group by other.identifier_key, anchor.identifier_key

),

final as (

    select
        nodes.node_id,
        links.identifier_key,
        links.anchor_key,
        links.first_linked_at,
        row_number() over (
            partition by links.identifier_key order by links.first_linked_at, links.anchor_key
        ) as link_order
    from links
    inner join nodes
        on links.identifier_key = nodes.identifier_key
    where nodes.is_mergeable

)

select * from final
