-- Operators' check, shown in Dagster on fct_guard_violations: no marketing send after the person unsubscribed from its channel or topic.
-- A warning, not an error: the run still publishes, and the rows say which sends.
{{ config(severity='warn') }}
select * from {{ ref('fct_guard_violations') }}
where violation = 'sent_after_opt_out'
