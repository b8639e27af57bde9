{#- Connected components by iterated min-label propagation with pointer jumping, in plain SQL.

    nodes_sql: a select returning node_id (integers); edges_sql: a select of (src_id, dst_id)
    holding both directions of every edge between those nodes (materialized once). Returns the
    relation of (node_id, label) where label is the smallest node_id of the node's component. Runs at execution time, one table per iteration;
    stops when an iteration changes nothing, and fails the model if that takes more than
    max_iterations (a partial answer would merge too little, silently). -#}
{% macro connected_components(nodes_sql, edges_sql, max_iterations) -%}
{%- set result = _cc_relation('result') -%}
{%- if not execute -%}
    {{ return(result) }}
{%- endif -%}
{%- set edges = _cc_relation('edges') -%}
{%- do adapter.drop_relation(edges) -%}
{%- do run_query(get_create_table_as_sql(False, edges, edges_sql)) -%}
{%- set first = _cc_relation(0) -%}
{%- do adapter.drop_relation(first) -%}
{#- Only nodes with an edge can change label: isolated ones join back at the end. Each starts
    with the smallest of itself and its neighbours, which saves a round. -#}
{%- do run_query(get_create_table_as_sql(False, first,
        "select src_id as node_id, case when min(dst_id) < src_id then min(dst_id) else src_id end"
        ~ " as label from " ~ edges ~ " group by src_id")) -%}
{%- set ns = namespace(current=first, converged=false, iterations=0, total=_cc_label_sum(first)) -%}
{%- for i in range(1, max_iterations + 1) -%}
    {%- if not ns.converged -%}
        {%- set next = _cc_relation(i) -%}
        {%- do adapter.drop_relation(next) -%}
        {%- set step -%}
            with candidates as (
                select node_id, label from {{ ns.current }}
                union all
                select edges.dst_id as node_id, labels.label
                from {{ edges }} as edges
                inner join {{ ns.current }} as labels
                    on edges.src_id = labels.node_id
            ),
            propagated as (
                select node_id, min(label) as label
                from candidates
                group by node_id
            )
            -- Pointer jumping: take the label of the label, halving chains each iteration.
            select propagated.node_id, jumped.label
            from propagated
            inner join propagated as jumped
                on propagated.label = jumped.node_id
        {%- endset -%}
        {%- do run_query(get_create_table_as_sql(False, next, step)) -%}
        {#- Labels only ever decrease (a node keeps the smallest it has seen), so an unchanged
            sum means no label changed: one scan instead of a join of two iterations. -#}
        {%- set total = _cc_label_sum(next) -%}
        {%- do adapter.drop_relation(ns.current) -%}
        {%- set ns.current = next -%}
        {%- set ns.iterations = i -%}
        {%- if total == ns.total -%}
            {%- set ns.converged = true -%}
        {%- endif -%}
        {%- set ns.total = total -%}
    {%- endif -%}
{%- endfor -%}
{%- if not ns.converged -%}
    {%- do adapter.drop_relation(ns.current) -%}
    {%- do adapter.drop_relation(edges) -%}
    {{ exceptions.raise_compiler_error(
        "connected_components did not converge within " ~ max_iterations ~ " iterations for "
        ~ this ~ ": raise vars.identity.max_iterations, or look for a giant component "
        ~ "(an identifier shared by many people that the guards do not catch)") }}
{%- endif -%}
{{ log("connected_components: " ~ this.identifier ~ " converged after " ~ ns.iterations ~ " iterations", info=True) }}
{%- do adapter.drop_relation(result) -%}
{%- set final -%}
    select labels.node_id, labels.label from {{ ns.current }} as labels
    union all
    select nodes.node_id, nodes.node_id as label
    from ({{ nodes_sql }}) as nodes
    left join {{ ns.current }} as labels
        on nodes.node_id = labels.node_id
    where labels.node_id is null
{%- endset -%}
{%- do run_query(get_create_table_as_sql(False, result, final)) -%}
{%- do adapter.drop_relation(ns.current) -%}
{%- do adapter.drop_relation(edges) -%}
{{ return(result) }}
{%- endmacro %}

{% macro connected_components_cleanup() -%}
{%- do adapter.drop_relation(_cc_relation('result')) -%}
{%- endmacro %}

{% macro _cc_label_sum(relation) -%}
{{ return(run_query("select cast(sum(label) as " ~ dbt.type_string() ~ ") from " ~ relation).columns[0].values()[0]) }}
{%- endmacro %}

{% macro _cc_relation(suffix) -%}
{{ return(api.Relation.create(database=this.database, schema=this.schema,
                              identifier=this.identifier ~ '__cc_' ~ suffix, type='table')) }}
{%- endmacro %}
