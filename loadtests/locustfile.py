"""Locust's entry to servelab's users — ``locust -f loadtests/locustfile.py`` — kept at this path
so commands written before the users moved keep working. The users themselves, and the notes on
running them, are in ``loadtests.locust_integration.users``.
"""

from loadtests.locust_integration.users import (
    BatchUser,
    EdgeUser,
    GrpcStreamUser,
    GrpcUser,
    RestUser,
)

__all__ = ["BatchUser", "EdgeUser", "GrpcStreamUser", "GrpcUser", "RestUser"]
