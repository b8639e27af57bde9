-- The connected component of every mergeable identifier: component_id = its smallest node_id.
-- Incremental: only components touched by the new batch (new edges, new nodes, identifiers that
-- just became shared) are recomputed, whole, so the partition equals a full rebuild's.
{{ config(post_hook=[
    "{{ connected_components_cleanup() }}",
    "delete from {{ this }} where node_id in (select node_id from {{ ref('int_identity_nodes') }} where not is_mergeable)",
]) }}
{%- set nodes = ref('int_identity_nodes') %}
{%- set edges = ref('int_identity_edges') %}

{%- if is_incremental() %}
{%- set scope -%}
    with touched as (
        select batch.node_id from {{ nodes }} as batch
        where not batch.is_anchor and {{ identity_new_batch('batch') }}
    ),
    touched_components as (
        select distinct previous.component_id
        from {{ this }} as previous
        inner join touched
            on previous.node_id = touched.node_id
    )
    select node_id from touched
    union
    select previous.node_id
    from {{ this }} as previous
    inner join touched_components
        on previous.component_id = touched_components.component_id
{%- endset -%}
{%- set nodes_sql -%}
    select scope.node_id
    from ({{ scope }}) as scope
    inner join {{ nodes }} as nodes
        on scope.node_id = nodes.node_id
    where nodes.is_mergeable
{%- endset -%}
{%- else %}
{%- set nodes_sql = "select node_id from " ~ nodes ~ " where is_mergeable" %}
{%- endif %}

{%- set edges_sql -%}
    select edges.src_id, edges.dst_id
    from {{ edges }} as edges
    inner join ({{ nodes_sql }}) as src
        on edges.src_id = src.node_id
    inner join ({{ nodes_sql }}) as dst
        on edges.dst_id = dst.node_id
{%- endset -%}

{%- set labels = connected_components(nodes_sql, edges_sql, identity_config().max_iterations) %}

select
    node_id,
    label as component_id,
    {{ identity_batch_stamp() }} as processed_at
from {{ labels }}
