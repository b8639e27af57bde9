-- Operators' check, shown in Dagster on fct_guard_violations: no send to an address suppressed
-- (bounced, STOPped, unsubscribed) for its kind of message.
-- A warning, not an error: the run still publishes, and the rows say which sends.
{{ config(severity='warn') }}
select * from {{ ref('fct_guard_violations') }}
where violation = 'sent_to_suppressed_address'
