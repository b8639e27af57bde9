{#- Identifier normalization shared by every model that matches on these values. -#}

{% macro normalize_email(column) -%}
case
    when lower(trim({{ column }})) like '%_@_%._%' then lower(trim({{ column }}))
end
{%- endmacro %}

{% macro blank_to_null(column) -%}
nullif(trim({{ column }}), '')
{%- endmacro %}

{#- `value` as a SQL string literal, quoted and escaped the way the warehouse reads them. -#}
{% macro text_literal(value) -%}
{{ return(adapter.dispatch('text_literal', 'switchyard')(value)) }}
{%- endmacro %}

{% macro default__text_literal(value) -%}
'{{ value | replace("'", "''") }}'
{%- endmacro %}

{#- Spark's literals take backslash escapes (a regex's \d would lose its backslash). -#}
{% macro spark__text_literal(value) -%}
'{{ value | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}

{#- True when `column` matches the regular expression `pattern` (a Python-style regex string). -#}
{% macro regex_matches(column, pattern) -%}
{{ return(adapter.dispatch('regex_matches', 'switchyard')(column, pattern)) }}
{%- endmacro %}

{% macro default__regex_matches(column, pattern) -%}
regexp_matches({{ column }}, {{ text_literal(pattern) }})
{%- endmacro %}

{% macro spark__regex_matches(column, pattern) -%}
({{ column }} rlike {{ text_literal(pattern) }})
{%- endmacro %}

{% macro snowflake__regex_matches(column, pattern) -%}
regexp_like({{ column }}, '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{% macro bigquery__regex_matches(column, pattern) -%}
regexp_contains({{ column }}, r'{{ pattern }}')
{%- endmacro %}

{% macro postgres__regex_matches(column, pattern) -%}
({{ column }} ~ '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{#- A code from a closed set (channel, status, topic): case and surrounding blanks do not count. -#}
{% macro normalize_code(column) -%}
nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- A message's text with the tokens of its signed links (…/unsubscribe/<token>,
    …/preferences/<token>) cut out: a link is its person's credential to their subscriptions,
    and the marts are read by everyone with warehouse access. -#}
{% macro redact_link_tokens(column) -%}
{{ return(adapter.dispatch('redact_link_tokens', 'switchyard')(column)) }}
{%- endmacro %}

{% macro default__redact_link_tokens(column) -%}
regexp_replace({{ column }}, '/(unsubscribe|preferences)/[A-Za-z0-9_-]+[.][A-Za-z0-9_-]+[.][A-Za-z0-9_-]+', '/$1/redacted')
{%- endmacro %}

{% macro duckdb__redact_link_tokens(column) -%}
regexp_replace({{ column }}, '/(unsubscribe|preferences)/[A-Za-z0-9_-]+[.][A-Za-z0-9_-]+[.][A-Za-z0-9_-]+', '/\1/redacted', 'g')
{%- endmacro %}
