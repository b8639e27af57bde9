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
-- previous_person_id: the id an identifier had before this run when it changed (a merge or a
-- split; fct_person_merges keeps them), read from the table this run replaces.
{%- set incremental = is_incremental() %}
{%- set previous_exists = execute and load_relation(this) is not none %}
{#- The large tables are read where they are used rather than through a shared CTE, which the
    warehouse would materialize whole. #}
{%- set nodes = ref('int_identity_nodes') %}
{%- set components = ref('int_identity_components') %}
with

anchor_links as (

    select * from {{ ref('int_identity_anchor_links') }}

),

{%- if incremental %}

touched as (

    select node_id from {{ nodes }} as nodes where {{ identity_new_batch('nodes') }}
    union
    select node_id from {{ components }} as components
    where {{ identity_new_batch('components') }}

),

{%- endif %}

scoped_nodes as (

    select * from {{ nodes }} as nodes
    where {{ identity_in_scope('nodes.node_id', 'select node_id from touched') }}

),

scoped_components as (

    select * from {{ components }} as components
    where {{ identity_in_scope('components.node_id', 'select node_id from touched') }}

),

node_anchor_links as {{ materialized_cte() }} (

    select
        scoped_nodes.node_id,
        anchor_links.anchor_key,
        row_number() over (
            partition by scoped_nodes.node_id
            order by anchor_links.first_linked_at, anchor_links.anchor_key
        ) as link_order
    from anchor_links
    inner join scoped_nodes
        on anchor_links.identifier_key = scoped_nodes.identifier_key
    where scoped_nodes.is_mergeable

),

component_anchors as (

    -- a touched component is recomputed whole, so all its members are in scope
    select
        scoped_components.component_id,
        count(distinct node_anchor_links.anchor_key) as anchor_count,
        min(node_anchor_links.anchor_key) as some_anchor
    from scoped_components
    inner join node_anchor_links
        on scoped_components.node_id = node_anchor_links.node_id
    group by scoped_components.component_id

),

first_links as (

    select node_id, anchor_key
    from node_anchor_links
    where link_order = 1

),

assigned as (

    select
        scoped_nodes.node_id,
        scoped_nodes.identifier_key,
        scoped_nodes.identifier_type,
        scoped_nodes.identifier_value,
        scoped_nodes.first_seen_at,
        scoped_nodes.last_seen_at,
        case
            when scoped_nodes.is_anchor then scoped_nodes.identifier_key
            when scoped_nodes.is_shared then 'shared:' || scoped_nodes.identifier_key
            when component_anchors.anchor_count = 1 then component_anchors.some_anchor
            when component_anchors.anchor_count > 1 and first_links.anchor_key is not null
                then first_links.anchor_key
            else 'component:' || cast(scoped_components.component_id as {{ dbt.type_string() }})
        end as group_key,
        case
            when scoped_nodes.is_anchor then 'anchor'
            when scoped_nodes.is_shared then 'shared'
            when component_anchors.anchor_count = 1 then 'stitched'
            when component_anchors.anchor_count > 1 and first_links.anchor_key is not null
                then 'ambiguous_first_link'
            when component_anchors.anchor_count > 1 then 'ambiguous_unattached'
            else 'anonymous'
        end as resolution
    from scoped_nodes
    left join scoped_components
        on scoped_nodes.node_id = scoped_components.node_id
    left join component_anchors
        on scoped_components.component_id = component_anchors.component_id
    left join first_links
        on scoped_nodes.node_id = first_links.node_id

),

{%- if incremental %}

affected_groups as (

    select group_key from assigned
    union
    select previous.group_key
    from {{ this }} as previous
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
    from {{ this }} as previous
    where previous.group_key in (select group_key from affected_groups)
        and previous.node_id not in (select node_id from scoped_nodes)

),

{%- else %}

members as (

    select * from assigned

),

{%- endif %}

ranked as {{ materialized_cte() }} (

    select
        members.*,
        row_number() over (
            partition by group_key order by first_seen_at, identifier_key
        ) as age_order
    from members

),

persons as (

    select group_key, 'p_' || {{ dbt.hash('identifier_key') }} as person_id
    from ranked
    where age_order = 1

),

final as (

    select
        ranked.node_id,
        ranked.identifier_type,
        ranked.identifier_value,
        ranked.identifier_key,
        persons.person_id,
        {%- if previous_exists %}
        case
            when previous.person_id <> persons.person_id then previous.person_id
        end as previous_person_id,
        {%- else %}
        cast(null as {{ dbt.type_string() }}) as previous_person_id,
        {%- endif %}
        ranked.resolution,
        ranked.first_seen_at,
        ranked.last_seen_at,
        ranked.group_key,
        {{ run_batch_stamp() }} as processed_at
    from ranked
    inner join persons
        on ranked.group_key = persons.group_key
    {%- if previous_exists %}
    -- node ids are renumbered by a rebuild: it matches identifiers by key
    left join {{ this }} as previous
        on {{ 'ranked.node_id = previous.node_id' if incremental
            else 'ranked.identifier_key = previous.identifier_key' }}
    {%- endif %}

)

select * from final
