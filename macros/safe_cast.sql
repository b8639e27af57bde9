{#- dbt's safe_cast falls back to a plain cast on DuckDB, which fails the whole model on one bad
    value; DuckDB's try_cast gives null instead, so the row can be rejected with a reason. -#}
{% macro duckdb__safe_cast(field, type) -%}
try_cast({{ field }} as {{ type }})
{%- endmacro %}

{#- A text timestamp as UTC: one that names its offset ("...+02:00", "...Z") is converted to UTC,
    one that names none is taken as UTC already; unparseable: null. DuckDB's cast to timestamp
    would drop the offset (01:00+02:00 read as 01:00, not 23:00 UTC the day before). -#}
{% macro utc_timestamp(field) -%}
{{ return(adapter.dispatch('utc_timestamp', 'switchyard')(field)) }}
{%- endmacro %}

{#- Elsewhere (Spark: a cast honours the offset, into the session time zone, UTC by setting). -#}
{% macro default__utc_timestamp(field) -%}
{{ dbt.safe_cast(field, api.Column.translate_type('timestamp')) }}
{%- endmacro %}

{% macro duckdb__utc_timestamp(field) -%}
case
    when {{ regex_matches('lower(trim(' ~ field ~ '))', '\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?\\s*(z|[+-]\\d{2}(:?\\d{2})?)$') }}
        then try_cast(timezone('UTC', try_cast({{ field }} as timestamptz)) as timestamp)
    else try_cast({{ field }} as timestamp)
end
{%- endmacro %}
