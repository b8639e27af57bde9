{#- Text at a JSON path ('$.a.b'), or null. Routed through dispatch so each warehouse can say it its way. -#}
{% macro json_text(column, path) -%}
{{ return(adapter.dispatch('json_text', 'switchyard')(column, path)) }}
{%- endmacro %}

{% macro default__json_text(column, path) -%}
json_extract_string({{ column }}, '{{ path }}')
{%- endmacro %}

{% macro snowflake__json_text(column, path) -%}
get_path(parse_json({{ column }}), '{{ path[2:] }}')::string
{%- endmacro %}

{% macro bigquery__json_text(column, path) -%}
json_value({{ column }}, '{{ path }}')
{%- endmacro %}
