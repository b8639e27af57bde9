{#- Remove the rows of `relation` (its rows read as `alias`) for which `condition` holds.

    Returns the SQL of a DELETE where the warehouse has one (a hook runs it, inside the model's
    transaction where there is one); on Spark over Parquet, which cannot delete, it rewrites the
    table without those rows itself and returns nothing for the hook to run. -#}
{% macro delete_rows(relation, condition, alias='deleted') -%}
{{ return(adapter.dispatch('delete_rows', 'switchyard')(relation, condition, alias)) }}
{%- endmacro %}

{% macro default__delete_rows(relation, condition, alias) -%}
delete from {{ relation }} as {{ alias }} where {{ condition }}
{%- endmacro %}

{#- Delta and Iceberg tables delete in place. A Parquet table is rewritten: the rows to keep go
    to a scratch table first, because Spark cannot overwrite a table it is reading. Not atomic: a
    crash between the two statements leaves the scratch table, and the model's next full refresh
    is the way back; use Delta or Iceberg (file_format) where that matters. -#}
{% macro spark__delete_rows(relation, condition, alias) -%}
{%- if config.get('file_format', 'parquet') in ['delta', 'iceberg', 'hudi'] -%}
delete from {{ relation }} as {{ alias }} where {{ condition }}
{%- elif execute -%}
    {%- set kept = api.Relation.create(schema=relation.schema, identifier=relation.identifier ~ '__kept', type='table') -%}
    {%- do run_query('drop table if exists ' ~ kept) -%}
    {%- do run_query('create table ' ~ kept ~ ' using parquet as select * from ' ~ relation ~ ' as ' ~ alias
                     ~ ' where not coalesce((' ~ condition ~ '), false)') -%}
    {%- do run_query('insert overwrite table ' ~ relation ~ ' select * from ' ~ kept) -%}
    {%- do run_query('drop table if exists ' ~ kept) -%}
{%- endif -%}
{%- endmacro %}
