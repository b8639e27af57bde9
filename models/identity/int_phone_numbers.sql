-- Every distinct raw phone value parsed with Google's libphonenumber (switchyard/phones.py):
-- E.164 when the number is valid; otherwise null and the parser's reason. Numbers without a
-- country code are read in the region in this model's meta (default_phone_region).
-- Incremental: values already parsed are not parsed again: a region change needs
-- `dbt run --full-refresh -s int_phone_numbers+` (its + rebuilds the phone traits of everyone,
-- person-scoped ones included).
{{ config(materialized='incremental', incremental_strategy='append') }}
{%- set region = ((config.get('meta') or {}).get('default_phone_region') or 'US') | upper %}

with candidates as (

    -- every raw value that could be a phone: declared phone identifiers and profile traits
    select distinct raw_value
    from {{ ref('int_identifier_values') }}
    where identifier_type = 'phone'
        and raw_value is not null
    {%- if is_incremental() %}
        -- parsing is the slow part: only values not parsed before
        and raw_value not in (select raw_phone from {{ this }} where raw_phone is not null)
    {%- endif %}

)

{{ parse_phones('candidates', 'raw_value', region) }}
