{#- Identifier normalization shared by every model that matches on these values. -#}

{% macro normalize_email(column) -%}
case
    when lower(trim({{ column }})) like '%_@_%._%' then lower(trim({{ column }}))
end
{%- endmacro %}

{#- E.164 if the value already carries a country code once punctuation is gone, else null.
    (Numbers without a country code cannot be placed without a region: they stay unreachable.) -#}
{% macro normalize_phone(column) -%}
case
    when regexp_replace({{ column }}, '[^0-9+]', '', 'g') similar to '\+[1-9][0-9]{7,14}'
        then regexp_replace({{ column }}, '[^0-9+]', '', 'g')
end
{%- endmacro %}

{% macro blank_to_null(column) -%}
nullif(trim({{ column }}), '')
{%- endmacro %}
