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
    hex-encoded: they are user input, and the script's lines are tab-separated. The row format
    is spelled out: read through a view (as dbt-spark's incremental runs read the model) the
    default one gave every column back as null here (pyspark 4; Hive's own default delimiter
    is \001, not a tab). -#}
{% macro spark__parse_phones(relation, column, region) -%}
select
    cast(unhex(substr(encoded, 2)) as string) as raw_phone,  -- behind its marker
    phone_e164,
    invalid_reason
from (
    select transform (hex(cast({{ column }} as binary)))
        row format delimited fields terminated by '\t' null defined as '\\N'
        using '{{ env_var("SWITCHYARD_PYTHON", "python3") }} -m switchyard.phones {{ region }}'
        as (encoded string, phone_e164 string, invalid_reason string)
        row format delimited fields terminated by '\t' null defined as '\\N'
    from {{ relation }}
) as parsed
{%- endmacro %}

{% macro default__parse_phones(relation, column, region) -%}
{{ exceptions.raise_compiler_error(
    "int_phone_numbers parses phones with switchyard/phones.py: add a " ~ adapter.type()
    ~ "__parse_phones macro in macros/phones.sql that calls it on this warehouse") }}
{%- endmacro %}
