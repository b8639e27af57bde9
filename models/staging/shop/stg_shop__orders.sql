with

source as (

    select * from {{ source('shop', 'orders') }}

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
        filename as source_file
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
        end as reject_reason,
        row_number() over (partition by order_id order by ordered_at desc, source_file desc)
            as export_number
    from typed

)

-- Re-exports repeat an order: the latest export wins.
select
    order_id,
    user_id,
    email,
    order_total,
    currency,
    order_status,
    ordered_at,
    source_file,
    reject_reason
from checked
where export_number = 1 or order_id is null
