{#- `with x as {{ materialized_cte() }} (...)`: a CTE read twice is computed once where the
    warehouse lets us say so (DuckDB and Postgres inline it otherwise, doing the work twice). -#}
{% macro materialized_cte() -%}
{{ return(adapter.dispatch('materialized_cte', 'switchyard')()) }}
{%- endmacro %}

{% macro default__materialized_cte() -%}
{%- endmacro %}

{% macro duckdb__materialized_cte() -%}
materialized
{%- endmacro %}

{% macro postgres__materialized_cte() -%}
materialized
{%- endmacro %}
