-- Operators' check, shown in Dagster on fct_guard_violations: no send over its journey's frequency cap (sliding window; every journey counted but transactional ones and those the project's cap policy exempts).
-- A warning, not an error: the run still publishes, and the rows say which sends.
{{ config(severity='warn') }}
select * from {{ ref('fct_guard_violations') }}
where violation = 'over_frequency_cap'
