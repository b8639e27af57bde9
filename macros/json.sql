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

{#- A JSON object from (key, SQL expression) pairs; null when there are none. -#}
{% macro json_object_of(pairs) -%}
{{ return(adapter.dispatch('json_object_of', 'switchyard')(pairs)) }}
{%- endmacro %}

{% macro default__json_object_of(pairs) -%}
{%- if pairs -%}
json_object({% for key, expr in pairs %}'{{ key }}', {{ expr }}{{ ', ' if not loop.last }}{% endfor %})
{%- else -%}
cast(null as json)
{%- endif -%}
{%- endmacro %}

{% macro spark__json_object_of(pairs) -%}
{%- if pairs -%}
to_json(named_struct({% for key, expr in pairs %}'{{ key }}', {{ expr }}{{ ', ' if not loop.last }}{% endfor %}))
{%- else -%}
cast(null as string)
{%- endif -%}
{%- endmacro %}

{% macro spark__json_text(column, path) -%}
get_json_object({{ column }}, '{{ path }}')
{%- endmacro %}
