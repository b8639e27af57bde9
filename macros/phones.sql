{#- A select of (raw_phone, phone_e164, invalid_reason) for the values of `column` in
    `relation`, parsed by switchyard/phones.py (one parser on every engine). -#}
{% macro parse_phones(relation, column, region) -%}
{{ return(adapter.dispatch('parse_phones', 'switchyard')(relation, column, region)) }}
{%- endmacro %}

{#- DuckDB: the functions the profile's plugin (switchyard.phones) registers. -#}
{% macro duckdb__parse_phones(relation, column, region) -%}
select
    {{ column }} as raw_phone,
    switchyard_phone_e164({{ column }}, '{{ region }}') as phone_e164,
    switchyard_phone_invalid_reason({{ column }}, '{{ region }}') as invalid_reason
from {{ relation }}
{%- endmacro %}

{#- Spark: a script transformation running the same parser beside each executor, with the
    Python named by SWITCHYARD_PYTHON (the one switchyard is installed in). Values travel
    base64-encoded: they are user input, and the script's lines are tab-separated. -#}
{% macro spark__parse_phones(relation, column, region) -%}
select
    cast(unbase64(encoded) as string) as raw_phone,
    phone_e164,
    invalid_reason
from (
    select transform (base64(cast({{ column }} as binary)))
        using '{{ env_var("SWITCHYARD_PYTHON", "python3") }} -m switchyard.phones {{ region }}'
        as (encoded string, phone_e164 string, invalid_reason string)
    from {{ relation }}
) as parsed
{%- endmacro %}

{% macro default__parse_phones(relation, column, region) -%}
{{ exceptions.raise_compiler_error(
    "int_phone_numbers parses phones with switchyard/phones.py: add a " ~ adapter.type()
    ~ "__parse_phones macro in macros/phones.sql that calls it on this warehouse") }}
{%- endmacro %}
