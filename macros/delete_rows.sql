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

{#- Delta and Iceberg tables delete in place (untested here: open-source Delta's DELETE takes no
    subquery, which every condition passed here has; a MERGE would be needed). A Parquet table is
    rewritten: the rows to keep go to a scratch table first, because Spark cannot overwrite a
    table it is reading. Not atomic: a crash before the scratch table is dropped leaves it, and
    the next run stops on it rather than lose what it may hold. -#}
{% macro spark__delete_rows(relation, condition, alias) -%}
{%- if config.get('file_format', 'parquet') in ['delta', 'iceberg', 'hudi'] -%}
delete from {{ relation }} as {{ alias }} where {{ condition }}
{%- elif execute -%}
    {%- set kept = api.Relation.create(schema=relation.schema, identifier=relation.identifier ~ '__kept', type='table') -%}
    {%- do refuse_leftover_scratch(kept, relation) -%}
    {%- do run_query('create table ' ~ kept ~ ' using parquet as select * from ' ~ relation ~ ' as ' ~ alias
                     ~ ' where not coalesce((' ~ condition ~ '), false)') -%}
    {%- do run_query('insert overwrite table ' ~ relation ~ ' select * from ' ~ kept) -%}
    {%- do run_query('drop table if exists ' ~ kept) -%}
{%- endif -%}
{%- endmacro %}

{#- A scratch table left by a rewrite or a delete+insert that did not finish may hold the only copy
    of rows the target lost: stop, and say how to recover, rather than drop it. -#}
{% macro refuse_leftover_scratch(scratch, relation) -%}
{%- if adapter.get_relation(scratch.database, scratch.schema, scratch.identifier) is not none -%}
    {{ exceptions.raise_compiler_error(
        scratch ~ " is left from a change to " ~ relation ~ " that did not finish: it may hold rows "
        ~ "the table lost. Compare the two and insert what is missing into " ~ relation
        ~ ", or rebuild it with --full-refresh; then drop " ~ scratch) }}
{%- endif -%}
{%- endmacro %}
