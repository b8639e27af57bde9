{#- Whom a replaced person id goes on as, as a select (alias_person_id, person_id): the person
    its journey entries follow (dim_person_aliases.is_primary); an id that still names someone
    is left out (its rows keep it). The metrics that count people by who they are today join
    it. -#}
{% macro person_successors() -%}
    select alias_person_id, person_id
    from {{ ref('dim_person_aliases') }}
    where is_primary and alias_person_id <> person_id
{%- endmacro %}

{#- The union of a recursive CTE. The chains dim_person_aliases follows move forward in time, so
    they end without the duplicate removal of `union`, which Spark does not allow there; the
    duplicates `union all` keeps are folded by the aggregates reading them. -#}
{% macro recursive_union() -%}
{{ return(adapter.dispatch('recursive_union', 'switchyard')()) }}
{%- endmacro %}

{% macro default__recursive_union() -%}
union
{%- endmacro %}

{% macro spark__recursive_union() -%}
union all
{%- endmacro %}
