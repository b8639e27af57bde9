-- Identifier values normalized for matching, each with the reason it cannot be used (if any):
-- invalid emails and phones, blank and placeholder values never join two people.
-- Incremental: appends the rows not processed yet (late rows within vars.identity.lookback_hours
-- included); every downstream identity model reads only this batch of new rows.
{%- set cfg = identity_config() %}
with

identifier_values as (

    select * from {{ ref('int_identifier_values') }} as candidate
    where {{ identity_window('candidate') }}

),

new_values as (

    select identifier_values.*
    from identifier_values
    {%- if is_incremental() %}
    -- rows already processed stay as they are: downstream models read only this batch
    left join (
        select processed.occurrence_id, processed.identifier_type
        from {{ this }} as processed
        where {{ identity_window('processed') }}
    ) as processed
        on identifier_values.occurrence_id = processed.occurrence_id
        and identifier_values.identifier_type = processed.identifier_type
    where processed.occurrence_id is null
    {%- endif %}

),

phone_numbers as (

    select * from {{ ref('int_phone_numbers') }}

),

normalized as (

    select
        identifier_values.occurrence_id,
        identifier_values.identifier_type,
        identifier_values.raw_value,
        identifier_values.occurred_at,
        identifier_values.arrived_at,
        identifier_values.source_model,
        case
        {%- for identifier_type, how in cfg.normalize.items() %}
            when identifier_values.identifier_type = '{{ identifier_type }}' then
            {%- if how == 'email' %} {{ normalize_email('identifier_values.raw_value') }}
            {%- elif how == 'phone' %} phone_numbers.phone_e164
            {%- else %} {{ blank_to_null('identifier_values.raw_value') }}
            {%- endif %}
        {%- endfor %}
            else {{ blank_to_null('identifier_values.raw_value') }}
        end as identifier_value,
        case
        {%- for identifier_type, how in cfg.normalize.items() if how in ('email', 'phone') %}
            when identifier_values.identifier_type = '{{ identifier_type }}' then
            {%- if how == 'email' %} 'not an email address'
            {%- else %} coalesce(phone_numbers.invalid_reason, 'not a phone number')
            {%- endif %}
        {%- endfor %}
            else 'blank'
        end as invalid_reason
    from new_values as identifier_values
    left join phone_numbers
        on identifier_values.identifier_type = 'phone'
        and identifier_values.raw_value = phone_numbers.raw_phone

),

checked as (

    select
        occurrence_id,
        identifier_type,
        -- the normalized value is the key's part after the type (not stored twice)
        identifier_type || ':' || identifier_value as identifier_key,
        raw_value,
        occurred_at,
        arrived_at,
        source_model,
        {{ run_batch_stamp() }} as processed_at,
        case
            when identifier_value is null then invalid_reason
            {%- if cfg.blocklist_values %}
            when lower(identifier_value) in (
                {%- for v in cfg.blocklist_values %}{{ text_literal(v | lower) }}{{ ', ' if not loop.last }}{% endfor -%}
            ) then 'blocklisted value'
            {%- endif %}
            {%- for pattern in cfg.blocklist_patterns %}
            when {{ regex_matches('identifier_value', pattern) }}
                then {{ text_literal('blocklisted pattern ' ~ pattern) }}
            {%- endfor %}
        end as excluded_reason
    from normalized

)

select * from checked
