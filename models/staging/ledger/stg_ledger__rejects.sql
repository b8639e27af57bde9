-- The ledger's run-file lines that could not be read (cut short by a kill): from the run file
-- while no compaction has taken it, then from the rejects the compaction recorded (it takes
-- whole lines only, and the run file goes ten minutes later). Each line once, wherever it is.
with

run_files as (

    select *, {{ dbt.split_part('filename', "'/'", -1) }} as file_name
    from {{ source('ledger', 'deliveries') }}

),

compacted as (

    select * from {{ source('ledger', 'rejects_compacted') }}

),

unreadable as (

    select file_name as source_file
    from run_files
    where {{ unreadable_line(ledger_line_keys()) }}
        and file_name not in (select source_file from compacted)

    union all

    select source_file
    from compacted

)

select
    cast(null as {{ dbt.type_string() }}) as send_key,  -- cut before it could be read
    source_file,
    {{ unreadable_line_reason() }} as reject_reason
from unreadable
