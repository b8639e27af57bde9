{#- Each declared journey's delivery policy as rows (journey, transactional, uncounted, topic,
    cap_messages, cap_hours, cap_calendar_day), read from the models' `meta.journey` and the
    project's cap policy (`vars: frequency_cap:`, activations/cap_policy.py) at run time: the
    checks judge sends by the same declarations the guards applied. `uncounted`: transactional,
    or exempt by the policy (counted toward no cap). -#}
{% macro journey_policies() %}
    {%- set policy = var('frequency_cap', none) or {} -%}
    {%- set exempt = policy.get('exempt_journeys') or [] -%}
    {%- set rows = [] -%}
    {%- for j in declared_journeys() -%}
        {%- set transactional = j.get('message_type') == 'transactional' -%}
        {%- set cap = j.get('frequency_cap') or {} -%}
        {%- if not cap and policy and not transactional and j['name'] not in exempt -%}
            {%- set cap = policy -%}
        {%- endif -%}
        {%- set topic = (j.get('topic') or '') | trim | lower -%}
        {%- do rows.append([
            dbt.string_literal(j['name']),
            "true" if transactional else "false",
            "true" if transactional or j['name'] in exempt else "false",
            dbt.string_literal(topic) if topic else "cast(null as " ~ dbt.type_string() ~ ")",
            cap['messages'] | int | string if cap else "cast(null as " ~ dbt.type_int() ~ ")",
            (cap.get('per_hours', 24) | float | string) if cap else "cast(null as " ~ dbt.type_float() ~ ")",
            "true" if cap.get('calendar_day') else "false",
        ]) -%}
    {%- endfor -%}
    {%- if rows -%}
        {{ literal_rows(['journey', 'transactional', 'uncounted', 'topic', 'cap_messages', 'cap_hours', 'cap_calendar_day'], rows) }}
    {%- else -%}
        select cast(null as {{ dbt.type_string() }}) as journey, false as transactional,
            false as uncounted, cast(null as {{ dbt.type_string() }}) as topic, cast(null as {{ dbt.type_int() }}) as cap_messages,
            cast(null as {{ dbt.type_float() }}) as cap_hours, false as cap_calendar_day
        where 1 = 0
    {%- endif -%}
{% endmacro %}

{#- Each declared journey's goals as rows (journey, goal_event, within_hours): the experiments
    count conversions from the events themselves, in every arm alike. -#}
{% macro journey_goals() %}
    {%- set rows = [] -%}
    {%- for j in declared_journeys() -%}
        {%- for goal in j.get('goals') or [] -%}
            {%- do rows.append([
                dbt.string_literal(j['name']),
                dbt.string_literal(goal['event']),
                goal['within_hours'] | float | string,
            ]) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if rows -%}
        {{ literal_rows(['journey', 'goal_event', 'within_hours'], rows) }}
    {%- else -%}
        select cast(null as {{ dbt.type_string() }}) as journey,
            cast(null as {{ dbt.type_string() }}) as goal_event,
            cast(null as {{ dbt.type_float() }}) as within_hours
        where 1 = 0
    {%- endif -%}
{% endmacro %}

{#- The declarations (`meta.journey`) of the project's journeys; none while dbt parses. -#}
{% macro declared_journeys() %}
    {%- set found = [] -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.config.meta.get('journey') -%}
            {%- do found.append(node.config.meta['journey']) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(found) }}
{% endmacro %}

{#- Rows written in the SQL (each a list of SQL literals) as one VALUES list, not a `union all` of
    one-row selects: Spark (4.x, adaptive execution on) failed the second run in one session of
    a query whose `in (select ...)` read such a union (ClassCastException:
    DefaultSerializationProxy to UnionExec.children; fct_journey_experiments, 3 runs of 3 after
    the first), which a long-lived session or a Spark Connect server meets on every rebuild.
    With VALUES, or adaptive execution off, every run passed (docs/scaling.md). -#}
{% macro literal_rows(columns, rows) %}
    {{- return(adapter.dispatch('literal_rows', 'switchyard')(columns, rows)) -}}
{% endmacro %}

{% macro default__literal_rows(columns, rows) -%}
    select {{ columns | join(', ') }} from (values
    {%- for row in rows %}
        ({{ row | join(', ') }}){{ ',' if not loop.last }}
    {%- endfor %}
    ) as literal_rows ({{ columns | join(', ') }})
{%- endmacro %}
