"""The streaming target: event-driven, micro-batched inference on asyncio.

``servelab stream [--input FILE|-] [--out FILE|-] [--follow] ...`` runs ``main``; the load
driver uses ``StreamConsumer`` (``submit`` one event, or ``run`` a source into a sink).
Modules: ``consumer`` (the pipeline), ``sources`` (queue, file, followed file, stdin; the JSON
lines sink), ``command`` (the CLI). Stdlib only.
"""

from targets.streaming.command import main
from targets.streaming.consumer import StreamConsumer, StreamReport, error_line
from targets.streaming.sources import END_OF_STREAM, JsonLinesSink, LineSource, QueueSource

__all__ = [
    "END_OF_STREAM",
    "JsonLinesSink",
    "LineSource",
    "QueueSource",
    "StreamConsumer",
    "StreamReport",
    "error_line",
    "main",
]
