-- The ledger's run-file lines that could not be used. A line cut short: from the run file while
-- it is there, then from the record the compaction that deleted it made (it takes whole lines
-- only, and deletes a run file ten minutes after taking it). A whole line without a send key:
-- from the run file until a compaction takes it, then from the lines file (or, where an older
-- compaction left it out, from its record). Each line once, wherever it is.
with

run_files as (

    select
        filename,
        {{ dbt.split_part('filename', "'/'", -1) }} as file_name,
        {{ unreadable_line(ledger_line_keys()) }} as unreadable
    from {{ source('ledger', 'deliveries') }}
    where send_key is null

),

-- a lines file holds all of a run file's lines of a kind or none: whole ones without a key, and
-- unreadable ones of a file read strictly (ending whole)
compacted as (

    select
        source_file as file_name,
        {{ unreadable_line(ledger_line_keys()) }} as unreadable
    from {{ source('ledger', 'deliveries_compacted') }}
    where send_key is null

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
    where file_name not in (select file_name from recorded)
        and not (
            unreadable and file_name in (select file_name from compacted where unreadable)
        )
        and not (
            not unreadable
            and file_name in (select file_name from compacted where not unreadable)
        )

    union all

    -- the lines file names the run file, not its folder
    select file_name as filename, unreadable
    from compacted

    union all

    -- less whole lines a lines file holds as well (a record holds those of every cut file)
    select filename, unreadable
    from recorded
    where unreadable
        or file_name not in (select file_name from compacted where not unreadable)

)

select
    cast(null as {{ dbt.type_string() }}) as send_key,  -- not there, or cut before it was read
    filename as source_file,
    case
        when unreadable then {{ unreadable_line_reason() }}
        else 'missing send_key'
    end as reject_reason
from rejects
