{#- Who holds a replaced person id now, as a select (alias_person_id, person_id): a merged id
    leads to one person; a split one, to several, and is left out (its rows keep the id they
    had). The metrics that count people by who they are today join it. -#}
{% macro person_successors() -%}
    select alias_person_id, min(person_id) as person_id
    from {{ ref('dim_person_aliases') }}
    group by alias_person_id
    having count(*) = 1
{%- endmacro %}
