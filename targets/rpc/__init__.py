"""The gRPC target: ``servelab.v1.Predictor`` on grpc.aio, with health and reflection.

``server`` runs it (``servelab serve grpc``), ``servicer`` holds the unary and stream handlers,
``status`` turns errors into gRPC statuses, ``convert`` maps protobuf messages to and from the
canonical schema (``targets.schema``) at the transport's edge, and ``client`` is a small typed
caller that degrades from v2 ``rows`` to v1 ``instances`` against a v1-only server. Nothing here
is imported by ``import targets.rpc``: grpc loads only when a module that needs it is imported.
"""
