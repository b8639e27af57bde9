{#- A person id is the hash of the identifier that anchors the person: stable across rebuilds. -#}
{% macro person_id(identifier_type, identifier_value) -%}
'p_' || {{ dbt.hash("'" ~ identifier_type ~ ":' || " ~ identifier_value) }}
{%- endmacro %}
