-- Every attribution model shares each conversion's one unit of credit, no more and no less, so
-- credits summed per journey equal its conversions.
select
    entry_id,
    sum(first_touch_credit) as first_touch,
    sum(last_touch_credit) as last_touch,
    sum(linear_credit) as linear_total,
    sum(time_decay_credit) as time_decay
from {{ ref('fct_conversion_attribution') }}
group by entry_id
having abs(sum(first_touch_credit) - 1) > 1e-9
    or abs(sum(last_touch_credit) - 1) > 1e-9
    or abs(sum(linear_credit) - 1) > 1e-9
    or abs(sum(time_decay_credit) - 1) > 1e-9
