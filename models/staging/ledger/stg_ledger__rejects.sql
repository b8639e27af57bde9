-- The ledger's run-file lines that could not be used. A line cut short: from the run file while
-- it is there, then from the record the compaction that deleted it made (it takes whole lines
-- only, and deletes a run file ten minutes after taking it). A whole line without a send key:
-- from the run file until a compaction takes it, then from the lines file. Each line once,
-- wherever it is.
with

run_files as (

    select
        filename,
        {{ dbt.split_part('filename', "'/'", -1) }} as file_name,
        send_key,
        {{ unreadable_line(ledger_line_keys()) }} as unreadable
    from {{ source('ledger', 'deliveries') }}

),

compacted as (

    select source_file, send_key from {{ source('ledger', 'deliveries_compacted') }}

),

recorded as (

    select
        source_file as filename,
        {{ dbt.split_part('source_file', "'/'", -1) }} as file_name,
        unreadable
    from {{ source('ledger', 'rejects_compacted') }}

),

rejects as (

    select filename, unreadable
    from run_files
    where unreadable
        and file_name not in (select file_name from recorded)

    union all

    select filename, unreadable
    from run_files
    where send_key is null
        and not unreadable
        and file_name not in (select source_file from compacted)
        -- (a rejects record from before compactions kept these lines)
        and file_name not in (select file_name from recorded)

    union all

    -- the lines file names the run file, not its folder
    select source_file as filename, false as unreadable
    from compacted
    where send_key is null

    union all

    select filename, unreadable
    from recorded

)

select
    cast(null as {{ dbt.type_string() }}) as send_key,  -- not there, or cut before it was read
    filename as source_file,
    case
        when unreadable then {{ unreadable_line_reason() }}
        else 'missing send_key'
    end as reject_reason
from rejects
