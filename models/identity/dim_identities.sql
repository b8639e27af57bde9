-- One row per usable identifier with the person it resolves to.
--   * an anchor (user_id) is its own person, with every identifier whose component reaches it;
--   * a component that reaches no anchor is an anonymous person;
--   * a component that reaches several anchors is not merged through: each member goes to the
--     anchor it was itself seen with first, members seen with none stay an anonymous person;
--   * a shared identifier (over its anchor limit) stays a person of its own.
-- The person id is the hash of the person's oldest identifier: stable across rebuilds, and when
-- two people merge the older id survives.
with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

components as (

    select * from {{ ref('int_identity_components') }}

),

anchor_links as (

    select * from {{ ref('int_identity_anchor_links') }}

),

node_anchor_links as (

    select
        nodes.node_id,
        anchor_links.anchor_key,
        anchor_links.link_order
    from anchor_links
    inner join nodes
        on anchor_links.identifier_key = nodes.identifier_key
    where nodes.is_mergeable

),

component_anchors as (

    select
        components.component_id,
        count(distinct node_anchor_links.anchor_key) as anchor_count,
        min(node_anchor_links.anchor_key) as some_anchor
    from components
    inner join node_anchor_links
        on components.node_id = node_anchor_links.node_id
    group by components.component_id

),

first_links as (

    select node_id, anchor_key
    from node_anchor_links
    where link_order = 1

),

assigned as (

    select
        nodes.node_id,
        nodes.identifier_key,
        nodes.identifier_type,
        nodes.identifier_value,
        nodes.first_seen_at,
        nodes.last_seen_at,
        case
            when nodes.is_anchor then nodes.identifier_key
            when nodes.is_shared then 'shared:' || nodes.identifier_key
            when component_anchors.anchor_count = 1 then component_anchors.some_anchor
            when component_anchors.anchor_count > 1 and first_links.anchor_key is not null
                then first_links.anchor_key
            else 'component:' || cast(components.component_id as {{ dbt.type_string() }})
        end as group_key,
        case
            when nodes.is_anchor then 'anchor'
            when nodes.is_shared then 'shared'
            when component_anchors.anchor_count = 1 then 'stitched'
            when component_anchors.anchor_count > 1 and first_links.anchor_key is not null
                then 'ambiguous_first_link'
            when component_anchors.anchor_count > 1 then 'ambiguous_unattached'
            else 'anonymous'
        end as resolution
    from nodes
    left join components
        on nodes.node_id = components.node_id
    left join component_anchors
        on components.component_id = component_anchors.component_id
    left join first_links
        on nodes.node_id = first_links.node_id

),

oldest_per_person as (

    select group_key, identifier_key as oldest_key
    from (
        select
            group_key,
            identifier_key,
            row_number() over (
                partition by group_key order by first_seen_at, identifier_key
            ) as age_order
        from assigned
    ) ranked
    where age_order = 1

),

final as (

    select
        assigned.identifier_type,
        assigned.identifier_value,
        assigned.identifier_key,
        'p_' || {{ dbt.hash('oldest_per_person.oldest_key') }} as person_id,
        assigned.resolution,
        assigned.first_seen_at,
        assigned.last_seen_at
    from assigned
    inner join oldest_per_person
        on assigned.group_key = oldest_per_person.group_key

)

select * from final
