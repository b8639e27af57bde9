{#- Connected components by iterated min-label propagation with pointer jumping, in plain SQL.

    nodes_sql: a select returning node_id (integers); edges: a relation of (src_id, dst_id) holding
    both directions of every edge. Returns the relation of (node_id, label) where label is the
    smallest node_id of the node's component. Runs at execution time, one table per iteration;
    stops when an iteration changes nothing, and fails the model if that takes more than
    max_iterations (a partial answer would merge too little, silently). -#}
{% macro connected_components(nodes_sql, edges, max_iterations) -%}
{%- set result = _cc_relation('result') -%}
{%- if not execute -%}
    {{ return(result) }}
{%- endif -%}
{%- set first = _cc_relation(0) -%}
{%- do adapter.drop_relation(first) -%}
{%- do run_query(get_create_table_as_sql(False, first,
        "select node_id, node_id as label from (" ~ nodes_sql ~ ") nodes")) -%}
{%- set ns = namespace(current=first, converged=false, iterations=0) -%}
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
        {%- set changed = run_query(
                "select count(*) from " ~ next ~ " as n inner join " ~ ns.current ~ " as c "
                ~ "on n.node_id = c.node_id where n.label <> c.label").columns[0].values()[0] -%}
        {%- do adapter.drop_relation(ns.current) -%}
        {%- set ns.current = next -%}
        {%- set ns.iterations = i -%}
        {%- if changed == 0 -%}
            {%- set ns.converged = true -%}
        {%- endif -%}
    {%- endif -%}
{%- endfor -%}
{%- if not ns.converged -%}
    {%- do adapter.drop_relation(ns.current) -%}
    {{ exceptions.raise_compiler_error(
        "connected_components did not converge within " ~ max_iterations ~ " iterations for "
        ~ this ~ ": raise vars.identity.max_iterations, or look for a giant component "
        ~ "(an identifier shared by many people that the guards do not catch)") }}
{%- endif -%}
{{ log("connected_components: " ~ this.identifier ~ " converged after " ~ ns.iterations ~ " iterations", info=True) }}
{%- do adapter.drop_relation(result) -%}
{%- do adapter.rename_relation(ns.current, result) -%}
{{ return(result) }}
{%- endmacro %}

{% macro connected_components_cleanup() -%}
{%- do adapter.drop_relation(_cc_relation('result')) -%}
{%- endmacro %}

{% macro _cc_relation(suffix) -%}
{{ return(api.Relation.create(database=this.database, schema=this.schema,
                              identifier=this.identifier ~ '__cc_' ~ suffix, type='table')) }}
{%- endmacro %}
