-- Edges between mergeable identifiers that appeared together. Each occurrence links its
-- identifiers to its oldest one (a star, not a clique): same components, far fewer edges.
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }}
    where excluded_reason is null

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}
    where is_mergeable

),

occurrence_nodes as (

    select distinct
        occurrences.occurrence_id,
        nodes.node_id
    from occurrences
    inner join nodes
        on occurrences.identifier_key = nodes.identifier_key

),

hubs as (

    select occurrence_id, min(node_id) as hub_id
    from occurrence_nodes
    group by occurrence_id

),

star as (

    select distinct
        hubs.hub_id as src_id,
        occurrence_nodes.node_id as dst_id
    from occurrence_nodes
    inner join hubs
        on occurrence_nodes.occurrence_id = hubs.occurrence_id
    where occurrence_nodes.node_id <> hubs.hub_id

),

both_directions as (

    select src_id, dst_id from star
    union
    select dst_id as src_id, src_id as dst_id from star

)

select * from both_directions
