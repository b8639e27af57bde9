-- One row per usable identifier with the person it resolves to.
--   * an anchor (user_id) is its own person, with every identifier whose component reaches it;
--   * a component that reaches no anchor is an anonymous person;
--   * a component that reaches several anchors is not merged through: each member goes to the
--     anchor it was itself seen with first, members seen with none stay an anonymous person;
--   * a shared identifier (over its anchor limit) stays a person of its own.
-- The person id is the hash of the person's oldest identifier: stable across rebuilds, and when
-- two people merge the older id survives.
-- Incremental: identifiers whose node or component changed are re-assigned, and every person
-- they join or leave (group_key) gets its oldest identifier, hence its id, recomputed whole.
{%- set incremental = is_incremental() %}
with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

components as (

    select * from {{ ref('int_identity_components') }}

),

{%- if incremental %}

touched as (

    select node_id from nodes where {{ identity_new_batch('nodes') }}
    union
    select node_id from components where {{ identity_new_batch('components') }}

),

{%- endif %}

scoped_nodes as (

    select * from nodes
    where {{ identity_in_scope('nodes.node_id', 'select node_id from touched') }}

),

scoped_components as (

    select * from components
    where {{ identity_in_scope('components.node_id', 'select node_id from touched') }}

),

component_anchors as (

    -- a touched component is recomputed whole, so all its members are in scope
    select
        scoped_components.component_id,
        min(scoped_nodes.min_anchor_key) as min_anchor_key,
        max(scoped_nodes.max_anchor_key) as max_anchor_key
    from scoped_components
    inner join scoped_nodes
        on scoped_components.node_id = scoped_nodes.node_id
    group by scoped_components.component_id

),

reach as (

    select
        scoped_nodes.*,
        scoped_components.component_id,
        case
            when component_anchors.min_anchor_key is null then 0
            when component_anchors.min_anchor_key = component_anchors.max_anchor_key then 1
            else 2
        end as anchors_reached,
        component_anchors.min_anchor_key as only_anchor_key
    from scoped_nodes
    left join scoped_components
        on scoped_nodes.node_id = scoped_components.node_id
    left join component_anchors
        on scoped_components.component_id = component_anchors.component_id

),

assigned as (

    select
        node_id,
        identifier_key,
        identifier_type,
        identifier_value,
        first_seen_at,
        last_seen_at,
        case
            when is_anchor then identifier_key
            when is_shared then 'shared:' || identifier_key
            when anchors_reached = 1 then only_anchor_key
            when anchors_reached > 1 and first_anchor_key is not null then first_anchor_key
            else 'component:' || cast(component_id as {{ dbt.type_string() }})
        end as group_key,
        case
            when is_anchor then 'anchor'
            when is_shared then 'shared'
            when anchors_reached = 1 then 'stitched'
            when anchors_reached > 1 and first_anchor_key is not null then 'ambiguous_first_link'
            when anchors_reached > 1 then 'ambiguous_unattached'
            else 'anonymous'
        end as resolution
    from reach

),

{%- if incremental %}

previous as (

    select * from {{ this }}

),

affected_groups as (

    select group_key from assigned
    union
    select previous.group_key
    from previous
    where previous.node_id in (select node_id from scoped_nodes)

),

members as (

    select * from assigned
    union all
    -- the untouched members of an affected person, as they were
    select
        previous.node_id,
        previous.identifier_key,
        previous.identifier_type,
        previous.identifier_value,
        previous.first_seen_at,
        previous.last_seen_at,
        previous.group_key,
        previous.resolution
    from previous
    where previous.group_key in (select group_key from affected_groups)
        and previous.node_id not in (select node_id from scoped_nodes)

),

{%- else %}

members as (

    select * from assigned

),

{%- endif %}

persons as (

    select group_key, 'p_' || {{ dbt.hash('identifier_key') }} as person_id
    from (
        select
            group_key,
            identifier_key,
            row_number() over (
                partition by group_key order by first_seen_at, identifier_key
            ) as age_order
        from members
    ) ranked
    where age_order = 1

),

final as (

    select
        members.node_id,
        members.identifier_type,
        members.identifier_value,
        members.identifier_key,
        persons.person_id,
        members.resolution,
        members.first_seen_at,
        members.last_seen_at,
        members.group_key,
        {{ identity_batch_stamp() }} as processed_at
    from members
    inner join persons
        on members.group_key = persons.group_key

)

select * from final
