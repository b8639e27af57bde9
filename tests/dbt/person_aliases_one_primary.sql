-- Each replaced person id goes on as exactly one person (dim_person_aliases.is_primary): the
-- journey tick moves its entries there and the ledger carries its send keys there.
select alias_person_id
from {{ ref('dim_person_aliases') }}
group by alias_person_id
having sum(case when is_primary then 1 else 0 end) <> 1
