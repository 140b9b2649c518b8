"""Events from intake to handlers: the intake stream, parsing, ids and dedupe, batching,
dispatch as chords, handling with retries, dead letters and conflicts, ordered shards, the
event log, replay, and redriving lost tasks. Imports the layers below, never ``app``
(but for type hints), ``ops`` or ``client``."""
