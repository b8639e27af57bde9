-- One row per send key: what was decided and what happened, from the append-only ledger.
with

ledger as (

    select * from {{ ref('stg_ledger__deliveries') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by send_key
            order by
                -- a final line stays final, whatever is stamped after it
                case when delivery_status in ('sent', 'failed', 'skipped') then 1 else 0 end desc,
                recorded_at desc,
                -- same time (a fixed clock): deferred, attempted, unknown or refused (a deferral
                -- that settles the attempt: activations/ledger/store.py RANK_SQL), the outcome
                case
                    when delivery_status = 'deferred' and reason = 'retrying' then 1
                    when delivery_status = 'deferred' then -1
                    when delivery_status = 'attempted' then 0
                    when delivery_status = 'unknown' then 1
                    else 2
                end desc,
                -- then as the ledger's reader folds them (activations/ledger/store.py fold_sql)
                delivery_status desc,
                reason desc nulls first,
                reason_detail desc nulls first
        ) as recency
    from ledger

),

successors as (

    -- a replaced person id goes on as one person (is_primary); one that lives on is kept as sent
    {{ person_successors() }}

),

attempts as (

    select
        send_key,
        count(case when delivery_status = 'attempted' then 1 end) as attempt_count,
        -- attempts the provider refused before any work (they went nowhere)
        count(case when delivery_status = 'deferred' and reason = 'retrying' then 1 end)
            as refusal_count,
        min(case when delivery_status = 'attempted' then recorded_at end) as first_attempted_at,
        max(case when delivery_status = 'sent' then recorded_at end) as sent_at
    from ledger
    group by send_key

),

final as (

    select
        ranked.send_key,
        ranked.journey,
        ranked.step,
        ranked.person_id,
        coalesce(successors.person_id, ranked.person_id) as current_person_id,
        ranked.entry_id,
        ranked.channel,
        ranked.recipient,
        -- 'attempted' as the last word: the outcome was never recorded (a crash mid-call); a
        -- refusal with more attempts than refusals: an earlier attempt may have gone out
        -- (activations/ledger/reader.py LedgerState.doubtful)
        case
            when ranked.delivery_status = 'attempted' then 'unknown'
            when ranked.delivery_status = 'deferred' and ranked.reason = 'retrying'
                and attempts.attempt_count > attempts.refusal_count then 'unknown'
            else ranked.delivery_status
        end as delivery_status,
        ranked.reason,
        ranked.reason_detail,
        ranked.http_status,
        ranked.provider_message_id,
        ranked.segments,
        ranked.subject,
        ranked.body,
        attempts.attempt_count,
        attempts.refusal_count,
        attempts.first_attempted_at,
        attempts.sent_at,
        ranked.recorded_at as decided_at
    from ranked
    inner join attempts
        on ranked.send_key = attempts.send_key
    left join successors
        on ranked.person_id = successors.alias_person_id
    where ranked.recency = 1

)

select * from final
