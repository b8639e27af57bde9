-- RFM: recency, frequency and monetary quintiles among buyers (5 = best), and the segment they
-- imply. Ties are broken by person_id so the scores are reproducible.
with

orders as (

    select * from {{ ref('int_people_orders') }}

),

scored as (

    select
        person_id,
        ntile(5) over (order by last_order_at, person_id) as recency_score,
        ntile(5) over (order by order_count, person_id) as frequency_score,
        ntile(5) over (order by revenue, person_id) as monetary_score
    from orders

),

segmented as (

    select
        *,
        case
            when recency_score >= 4 and frequency_score >= 4 then 'champions'
            when recency_score >= 3 and frequency_score >= 3 then 'loyal'
            when recency_score >= 4 then 'promising'
            when recency_score <= 2 and frequency_score >= 4 then 'at_risk'
            when recency_score <= 2 and frequency_score <= 2 then 'hibernating'
            else 'needs_attention'
        end as rfm_segment
    from scored

)

select * from segmented
