{#- dbt-spark's incremental materialization with `delete+insert` beside its own strategies, so
    the models keep one config on every engine: the target's rows whose unique key the new batch
    holds are removed (delete_rows: a DELETE on Delta and Iceberg, a rewrite on Parquet), then the
    batch is appended. These override dbt-spark's macros of the same names (a root project's
    macro wins over an adapter's). -#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
{%- if raw_strategy == 'delete+insert' -%}
    {{ return(raw_strategy) }}
{%- endif -%}
{{ return(dbt.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
{%- if strategy != 'delete+insert' -%}
    {{ return(dbt.dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates)) }}
{%- endif -%}
{%- if not unique_key -%}
    {{ exceptions.raise_compiler_error("delete+insert needs a unique_key on " ~ target) }}
{%- endif -%}
{%- set keys = [unique_key] if unique_key is string else unique_key -%}
{#- The batch is written to a scratch table first. A model's query may read the target itself
    (dim_identities reads the rows it replaces), and Spark recomputes a cached view once a table
    it reads changes: the delete would change the batch it deletes for. -#}
{%- set batch = api.Relation.create(schema=target.schema, identifier=target.identifier ~ '__batch', type='table') -%}
{%- do refuse_leftover_scratch(batch, target) -%}
{%- do run_query('create table ' ~ batch ~ ' using parquet as select * from ' ~ source) -%}
{%- set matches = [] -%}
{%- for key in keys -%}
    {%- do matches.append('batch.' ~ key ~ ' = deleted.' ~ key) -%}
{%- endfor -%}
{%- set condition = 'exists (select 1 from ' ~ batch ~ ' as batch where ' ~ matches | join(' and ') ~ ')' -%}
{%- set delete_sql = delete_rows(target, condition) | trim -%}
{%- if delete_sql -%}
    {%- do run_query(delete_sql) -%}
{%- endif -%}
{%- do run_query(get_insert_into_sql(batch, target)) -%}
{#- the materialization's main statement: the last step -#}
drop table if exists {{ batch }}
{% endmacro %}
