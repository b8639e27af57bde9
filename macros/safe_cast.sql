{#- dbt's safe_cast falls back to a plain cast on DuckDB, which fails the whole model on one bad
    value; DuckDB's try_cast gives null instead, so the row can be rejected with a reason. -#}
{% macro duckdb__safe_cast(field, type) -%}
try_cast({{ field }} as {{ type }})
{%- endmacro %}
