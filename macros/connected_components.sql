{#- Connected components by repeated contraction, in plain SQL.

    nodes_sql: a select returning node_id (non-negative integers below 2^31); edges_sql: a select
    of (src_id, dst_id) holding both directions of every edge between those nodes (read twice).
    Returns the relation of (node_id, label): label is the member of the node's component with the
    smallest priority (a fixed scramble of node_id), so the same graph always gets the same labels.

    Each round every node hooks to the smallest-priority node among itself and its neighbours, and
    the next round runs on the graph of those hooks (edges between different hooks, deduplicated).
    Scrambled priorities make that graph shrink by a constant factor per round whatever the
    numbering (with plain ids, a path numbered in order would lose one node per round), so rounds
    grow with log(size) and all but the first are small. The component's smallest-priority node
    hooks to itself in every round, so it is what the component finally contracts to. Labels are
    then resolved back through the rounds' hooks. Fails the model past max_iterations rounds
    rather than return a partial answer (it would merge too little, silently). -#}
{% macro connected_components(nodes_sql, edges_sql, max_iterations) -%}
{%- set result = scratch_relation('cc_result') -%}
{%- if not execute -%}
    {{ return(result) }}
{%- endif -%}
{%- set too_large = run_query("select count(*) from (" ~ nodes_sql ~ ") as nodes where node_id >= "
                              ~ _cc_id_bound()).columns[0].values()[0] | int -%}
{%- if too_large > 0 -%}
    {{ exceptions.raise_compiler_error("connected_components: node ids must be below 2^31 for "
                                       ~ this ~ "; rebuild it with --full-refresh to renumber") }}
{%- endif -%}
{%- set ns = namespace(edges='(' ~ edges_sql ~ ')', hooks=[], converged=false) -%}
{%- for round in range(max_iterations) -%}
{%- if not ns.converged -%}
    {%- set hooks = scratch_relation('cc_hooks_' ~ round) -%}
    {%- set next_edges = scratch_relation('cc_edges_' ~ (round + 1)) -%}
    {%- do adapter.drop_relation(hooks) -%}
    {%- do adapter.drop_relation(next_edges) -%}
    {%- set hook_sql -%}
        select
            node_id,
            case when smallest < own then {{ _cc_node_of('smallest') }} else node_id end as parent
        from (
            select
                edges.src_id as node_id,
                {{ _cc_priority('edges.src_id') }} as own,
                min({{ _cc_priority('edges.dst_id') }}) as smallest
            from {{ ns.edges }} as edges
            group by edges.src_id
        ) as neighbourhoods
    {%- endset -%}
    {%- do run_query(get_create_table_as_sql(False, hooks, hook_sql)) -%}
    {%- set contract_sql -%}
        select distinct src_hook.parent as src_id, dst_hook.parent as dst_id
        from {{ ns.edges }} as edges
        inner join {{ hooks }} as src_hook
            on edges.src_id = src_hook.node_id
        inner join {{ hooks }} as dst_hook
            on edges.dst_id = dst_hook.node_id
        where src_hook.parent <> dst_hook.parent
    {%- endset -%}
    {%- do run_query(get_create_table_as_sql(False, next_edges, contract_sql)) -%}
    {%- if round > 0 -%}
        {%- do adapter.drop_relation(ns.edges) -%}
    {%- endif -%}
    {%- do ns.hooks.append(hooks) -%}
    {%- set ns.edges = next_edges -%}
    {%- set ns.converged = _cc_count(next_edges) == 0 -%}
{%- endif -%}
{%- endfor -%}
{%- do adapter.drop_relation(ns.edges) -%}
{%- if not ns.converged -%}
    {%- for hooks in ns.hooks -%}{%- do adapter.drop_relation(hooks) -%}{%- endfor -%}
    {{ exceptions.raise_compiler_error(
        "connected_components did not converge within " ~ max_iterations ~ " iterations for "
        ~ this ~ ": raise vars.identity.max_iterations, or look for a giant component "
        ~ "(an identifier shared by many people that the guards do not catch)") }}
{%- endif -%}
{{ log("connected_components: " ~ this.identifier ~ " converged after " ~ ns.hooks | length ~ " iterations", info=True) }}
{#- Resolve from the last round back: a node's label is its hook's label one round later, or
    the hook itself when that had no edges left (its component was already whole). -#}
{%- set ns.labels = ns.hooks[-1] -%}
{%- for hooks in ns.hooks[:-1] | reverse -%}
    {%- set labels = scratch_relation('cc_labels_' ~ loop.revindex0) -%}
    {%- do adapter.drop_relation(labels) -%}
    {%- set resolve_sql -%}
        select hooks.node_id, coalesce(later.parent, hooks.parent) as parent
        from {{ hooks }} as hooks
        left join {{ ns.labels }} as later
            on hooks.parent = later.node_id
    {%- endset -%}
    {%- do run_query(get_create_table_as_sql(False, labels, resolve_sql)) -%}
    {%- do adapter.drop_relation(ns.labels) -%}
    {%- do adapter.drop_relation(hooks) -%}
    {%- set ns.labels = labels -%}
{%- endfor -%}
{%- do adapter.drop_relation(result) -%}
{%- set final -%}
    select labels.node_id, labels.parent as label from {{ ns.labels }} as labels
    union all
    -- nodes without edges are components of their own
    select nodes.node_id, nodes.node_id as label
    from ({{ nodes_sql }}) as nodes
    left join {{ ns.labels }} as labels
        on nodes.node_id = labels.node_id
    where labels.node_id is null
{%- endset -%}
{%- do run_query(get_create_table_as_sql(False, result, final)) -%}
{%- do adapter.drop_relation(ns.labels) -%}
{{ return(result) }}
{%- endmacro %}

{#- A node's priority and id in one bigint: a multiplicative scramble of the id (mod 2^31) in the
    high bits, the id in the low bits, so min() picks the smallest priority and keeps its id. -#}
{% macro _cc_priority(node_id) -%}
mod({{ node_id }} * 2654435761, {{ _cc_id_bound() }}) * {{ _cc_id_bound() }} + {{ node_id }}
{%- endmacro %}

{% macro _cc_node_of(priority) -%}
mod({{ priority }}, {{ _cc_id_bound() }})
{%- endmacro %}

{% macro _cc_id_bound() -%}
2147483648
{%- endmacro %}

{% macro _cc_count(relation) -%}
{{ return(run_query("select count(*) from " ~ relation).columns[0].values()[0] | int) }}
{%- endmacro %}
