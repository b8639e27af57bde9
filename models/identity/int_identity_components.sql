-- The connected component of every mergeable identifier (macros/connected_components.sql).
-- Incremental: only components touched by the new batch (new edges, new nodes, identifiers that
-- just became shared) are recomputed, whole, so the partition equals a full rebuild's.
{{ config(post_hook=[
    "{{ drop_scratch_relations(['cc_result', 'scope']) }}",
    "{{ delete_rows(this, 'deleted.node_id in (select node_id from ' ~ ref('int_identity_nodes') ~ ' where is_shared)') }}",
]) }}
{%- set nodes = ref('int_identity_nodes') %}
{%- set edges = ref('int_identity_edges') %}

{%- if is_incremental() %}
{#- Materialized once: the macro reads the scope several times. -#}
{%- set scope = scratch_relation('scope') %}
{%- set scope_sql -%}
    with touched as (
        select batch.node_id from {{ nodes }} as batch
        where not batch.is_anchor and {{ identity_new_batch('batch') }}
    ),
    touched_components as (
        select distinct previous.component_id
        from {{ this }} as previous
        inner join touched
            on previous.node_id = touched.node_id
    ),
    members as (
        select node_id from touched
        union
        select previous.node_id
        from {{ this }} as previous
        inner join touched_components
            on previous.component_id = touched_components.component_id
    )
    select members.node_id
    from members
    inner join {{ nodes }} as nodes
        on members.node_id = nodes.node_id
    where nodes.is_mergeable
{%- endset %}
{%- if execute %}
{%- do adapter.drop_relation(scope) %}
{%- do run_query(get_create_table_as_sql(False, scope, scope_sql)) %}
{%- endif %}
{%- set nodes_sql = "select node_id from " ~ scope %}
{%- set edges_sql -%}
    select edges.src_id, edges.dst_id
    from {{ edges }} as edges
    inner join {{ scope }} as src
        on edges.src_id = src.node_id
    inner join {{ scope }} as dst
        on edges.dst_id = dst.node_id
{%- endset %}

{%- else %}
{%- set nodes_sql = "select node_id from " ~ nodes ~ " where is_mergeable" %}
{#- Edges only join non-anchor nodes, so leaving out the few shared ones leaves mergeable ones. -#}
{%- set edges_sql -%}
    select edges.src_id, edges.dst_id
    from {{ edges }} as edges
    left join (select node_id from {{ nodes }} where is_shared) as shared_src
        on edges.src_id = shared_src.node_id
    left join (select node_id from {{ nodes }} where is_shared) as shared_dst
        on edges.dst_id = shared_dst.node_id
    where shared_src.node_id is null and shared_dst.node_id is null
{%- endset %}
{%- endif %}

{%- set labels = connected_components(nodes_sql, edges_sql, identity_config().max_iterations) %}

select
    node_id,
    label as component_id,
    {{ run_batch_stamp() }} as processed_at
from {{ labels }}
