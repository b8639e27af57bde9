"""Every distinct raw phone value parsed with Google's libphonenumber (the `phonenumbers` package).

E.164 when the number is valid; otherwise null and the parser's reason. Numbers without a country
code are read in the region in this model's meta (default_phone_region). Incremental: values
already parsed are not parsed again: a region change needs `dbt run --full-refresh -s
int_phone_numbers+` (its + rebuilds the phone traits of everyone, person-scoped ones included).
"""

import phonenumbers

COLUMNS = {"raw_phone": "varchar", "phone_e164": "varchar", "invalid_reason": "varchar"}


def parse(raw, region):
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        return None, f"not a phone number: {exc}"
    if not phonenumbers.is_valid_number(number):
        return None, "not a valid number for its region"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def model(dbt, session):
    dbt.config(materialized="incremental", packages=["phonenumbers", "polars"])
    region = ((dbt.config.get("meta") or {}).get("default_phone_region") or "US").upper()
    values = dbt.ref("int_identifier_values")
    # Every raw value that could be a phone: declared phone identifiers and profile traits.
    candidates = values.filter("identifier_type = 'phone' and raw_value is not null")
    candidates = candidates.project("raw_value").distinct()
    if dbt.is_incremental:
        # Parsing is the slow part: only values not parsed before.
        candidates = candidates.except_(session.table(str(dbt.this)).project("raw_phone"))
    rows = [(value, *parse(value, region)) for (value,) in candidates.fetchall()]
    if not rows:
        # The usual increment: nothing new to parse (importing polars would cost more than the run).
        typed = ", ".join(f"cast(null as {kind}) as {name}" for name, kind in COLUMNS.items())
        return session.sql(f"select {typed} where 1 = 0")
    import polars as pl

    return pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.Utf8), orient="row")
