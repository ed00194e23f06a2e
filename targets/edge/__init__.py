"""The edge runtime: the small, standard-library-only runtime a gateway ships.

It quantises each request's rows, answers from an LRU cache keyed by the quantised rows, asks a
remote REST target first when one is configured (behind a circuit breaker), and falls back to the
local model when the remote cannot answer. ``targets.edge.bundle`` packs it, with a stdlib model
and its configuration, into a zipapp that runs on a bare ``python -I -S``. ``runtime`` answers
requests (and runs the stdin/stdout loop); ``config`` holds ``EdgeConfig`` and a bundle's options.

Everything in this package imports the standard library and the stdlib-only ``targets`` core
(errors, schema, models, spec, service, units, logs) and nothing else; a test proves it.
"""
