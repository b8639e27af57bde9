{#- `column` of `relation` if it has one, else a typed null: for a column a newer version added to
    files landed before it (an upgraded home's old Parquet files read through a glob). -#}
{% macro column_or_null(relation, column, type) -%}
    {%- if execute -%}
        {%- set probe = run_query("select * from " ~ relation ~ " where 1 = 0") -%}
        {%- if column in probe.column_names -%}
            {{ column }}
        {%- else -%}
            cast(null as {{ type }})
        {%- endif -%}
    {%- else -%}
        {{ column }}
    {%- endif -%}
{%- endmacro %}
