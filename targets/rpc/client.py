"""A small typed grpc.aio client for ``servelab.v1.Predictor`` that speaks both API versions.

``predict(rows)`` sends one v2 ``rows`` request. Against a server that answers UNIMPLEMENTED
(v2 disabled) — or one that predates v2 and silently ignored ``rows`` (its answer says ``api`` is
not ``v2``) — it degrades to one v1 ``instances`` call per row and remembers to, so an upgraded
client keeps working with an old deployment. Answers are canonical bodies (``targets.schema``), so
callers check them with ``response_problem`` like any other transport's. RPC failures other than
the one it works around are raised as grpc's own ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from targets.rpc import convert, predict_pb2_grpc
from targets.schema import MAX_PRECISION


class PredictClient:
    """Calls ``Predict`` on a channel it is given (``open`` makes and owns one)."""

    def __init__(self, channel: grpc.aio.Channel, *, owns_channel: bool = False) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self._stub = predict_pb2_grpc.PredictorStub(channel)
        self.v2_available: bool | None = None  # unknown until the first v2 attempt
        self.calls = 0  # RPCs sent, degraded per-row calls included

    @classmethod
    def open(cls, address: str, *, max_message_bytes: int | None = None) -> PredictClient:
        """A client with its own insecure channel to ``HOST:PORT`` (call from a running loop)."""
        options = []
        if max_message_bytes is not None:
            options.append(("grpc.max_send_message_length", max_message_bytes))
        return cls(grpc.aio.insecure_channel(address, options=options), owns_channel=True)

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> PredictClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def predict(
        self,
        rows: Sequence[Sequence[float]],
        *,
        request_id: str | None = None,
        model_version: str | None = None,
        precision: int | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The canonical answer for ``rows``: one prediction per row, in order.

        Degraded, the v2-only ``request_id`` and ``model_version`` cannot be sent and are
        dropped; ``precision`` is applied here, with the rounding the server would use, so the
        predictions are the ones a v2 server returns. The metadata is the first call's, plus
        ``calls`` (how many RPCs this answer took).
        """
        if not rows:
            raise ValueError("rows must hold at least one row")
        if precision is not None and not 0 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be an integer 0..{MAX_PRECISION}, got {precision}")
        if self.v2_available is not False:
            message = convert.rows_request(
                rows, request_id=request_id, model_version=model_version, precision=precision
            )
            self.calls += 1
            try:
                response = await self._stub.Predict(message, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                self.v2_available = False
            else:
                if response.metadata.api == "v2":
                    self.v2_available = True
                    return convert.from_response(response)
                self.v2_available = False  # a pre-v2 server ignored `rows`: its answer is wrong
        return await self._predict_per_row(rows, precision, timeout_s)

    async def predict_one(
        self, instances: Sequence[float], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """One row through v1 ``instances`` (what every server version understands)."""
        self.calls += 1
        response = await self._stub.Predict(convert.instances_request(instances), timeout=timeout_s)
        return convert.from_response(response)

    async def _predict_per_row(
        self, rows: Sequence[Sequence[float]], precision: int | None, timeout_s: float | None
    ) -> dict[str, Any]:
        # Sequential on purpose: a degraded client should not multiply its load on an old server.
        answers = [await self.predict_one(row, timeout_s=timeout_s) for row in rows]
        predictions = [value for answer in answers for value in answer["predictions"]]
        if precision is not None:
            predictions = [round(value, precision) for value in predictions]
        metadata = {**answers[0]["metadata"], "calls": len(answers)}
        return {"predictions": predictions, "metadata": metadata}
