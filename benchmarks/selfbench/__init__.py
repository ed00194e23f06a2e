"""servelab's self-benchmark: how fast servelab's generators are, measured side by side with
Locust, wrk and a bare grpc.aio client against the same targets. ``python -m benchmarks.selfbench``
(see ``__main__.py``); prints a table and ratios, writes a JSON file, asserts nothing about time."""
