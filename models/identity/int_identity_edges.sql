-- Edges between non-anchor identifiers that appeared together (every pair, both directions).
-- Pairs rather than a star, so that dropping a node later (it turned out to be shared) never
-- disconnects the others. Incremental: only the new batch's occurrences add edges.
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }} as batch
    where batch.excluded_reason is null and {{ identity_new_batch('batch') }}

),

nodes as (

    -- every identifier of the batch was rewritten by this run's nodes
    select * from {{ ref('int_identity_nodes') }} as nodes
    where not nodes.is_anchor and {{ identity_new_batch('nodes') }}

),

occurrence_nodes as {{ materialized_cte() }} (

    select distinct
        occurrences.occurrence_id,
        nodes.node_id
    from occurrences
    inner join nodes
        on occurrences.identifier_key = nodes.identifier_key

),

pairs as (

    select distinct
        a.node_id as src_id,
        b.node_id as dst_id,
        {{ run_batch_stamp() }} as processed_at
    from occurrence_nodes as a
    inner join occurrence_nodes as b
        on a.occurrence_id = b.occurrence_id
        and a.node_id <> b.node_id

)

select * from pairs
