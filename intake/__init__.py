"""Events in: the Segment-compatible collector (`switchyard collect`), landing what it takes in
the append-only landing files without ever touching the warehouse."""
