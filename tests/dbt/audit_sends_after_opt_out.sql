-- Operators' check, shown in Dagster on fct_guard_violations: no send after the person unsubscribed from its channel (marketing) or its topic.
-- A warning, not an error: the run still publishes, and the rows say which sends.
{{ config(severity='warn') }}
select * from {{ ref('fct_guard_violations') }}
where violation = 'sent_after_opt_out'
