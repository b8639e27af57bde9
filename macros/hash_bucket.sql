{#- A stable bucket in [0, buckets) for a string: the first 32 bits of its md5, modulo `buckets`.
    Split and holdout assignment use it, so a re-run or a rebuild, on any engine, assigns the
    same way (Python: int(md5(text).hexdigest()[:8], 16) % buckets). -#}
{% macro hash_bucket(expression, buckets) -%}
{{ return(adapter.dispatch('hash_bucket', 'switchyard')(expression, buckets)) }}
{%- endmacro %}

{% macro default__hash_bucket(expression, buckets) -%}
{{ exceptions.raise_compiler_error("hash_bucket is not implemented for the " ~ target.type ~ " adapter: add a " ~ target.type ~ "__hash_bucket macro in macros/hash_bucket.sql") }}
{%- endmacro %}

{% macro duckdb__hash_bucket(expression, buckets) -%}
(cast('0x' || left(md5({{ expression }}), 8) as bigint) % {{ buckets }})
{%- endmacro %}

{% macro spark__hash_bucket(expression, buckets) -%}
pmod(cast(conv(left(md5({{ expression }}), 8), 16, 10) as bigint), {{ buckets }})
{%- endmacro %}

{#- 'holdout' for the declared share of a journey's people (by person, stable; in steps of 0.01%),
    else 'treatment'. -#}
{% macro journey_arm(journey_name, person_id, holdout_percent) -%}
{%- if holdout_percent | float > 0 -%}
case
    when {{ hash_bucket("'" ~ journey_name ~ ":' || " ~ person_id, 10000) }} < {{ (holdout_percent | float * 100) | round | int }}
        then 'holdout'
    else 'treatment'
end
{%- else -%}
'treatment'
{%- endif -%}
{%- endmacro %}
