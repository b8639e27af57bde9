-- The journey itself is declared in _audiences__models.yml (meta.journey).
{{ journey_entry_audience() }}
