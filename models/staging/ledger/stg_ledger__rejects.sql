-- The ledger's run-file lines that could not be read (cut short by a kill), while their file is
-- there: a compaction takes only whole lines, and the run file goes ten minutes later.
with

source as (

    select * from {{ source('ledger', 'deliveries') }}

)

select
    cast(null as {{ dbt.type_string() }}) as send_key,  -- cut before it could be read
    filename as source_file,
    {{ unreadable_line_reason() }} as reject_reason
from source
where {{ unreadable_line(ledger_line_keys()) }}
