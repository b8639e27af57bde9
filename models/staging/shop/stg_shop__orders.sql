-- Incremental: each run types the export lines loaded since the last (base_shop__orders) and
-- merges them by order_id with the orders already here, so a run's cost follows the new files.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='order_id',
          on_schema_change='fail') }}
with

source as (

    select * from {{ ref('base_shop__orders') }} as base
    where {{ landing_new_batch('base') }}

),

typed as (

    select
        {{ blank_to_null('order_id') }} as order_id,
        {{ blank_to_null('user_id') }} as user_id,
        {{ normalize_email('email') }} as email,
        {{ dbt.safe_cast('total', api.Column.translate_type('decimal(18,2)')) }} as order_total,
        upper(currency) as currency,
        lower(status) as order_status,
        {{ utc_timestamp('created_at') }} as ordered_at,
        created_at as raw_created_at,
        source_file,
        loaded_at
    from source

),

checked as (

    select
        *,
        case
            when order_id is null then 'missing order_id'
            when ordered_at is null then 'unparseable created_at: ' || coalesce(raw_created_at, 'null')
            when order_total is null then 'missing or non-numeric total'
            when user_id is null and email is null then 'neither user_id nor a valid email'
        end as reject_reason
    from typed

),

{%- set kept = 'order_id, user_id, email, order_total, currency, order_status, ordered_at, '
    ~ 'source_file, loaded_at, reject_reason' %}

candidates as (

    select {{ kept }} from checked
    {%- if is_incremental() %}
    -- an order exported before competes with its new export
    union all
    select {{ kept }} from {{ this }}
    where order_id in (select order_id from checked where order_id is not null)
    {%- endif %}

),

ranked as (

    select
        *,
        row_number() over (partition by order_id order by ordered_at desc, source_file desc)
            as export_number
    from candidates

)

-- Re-exports repeat an order: the latest export wins.
select {{ kept }}
from ranked
where export_number = 1 or order_id is null
