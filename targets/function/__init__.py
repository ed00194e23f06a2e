"""servelab's REST app as a function (AWS-Lambda style, through ``mangum``) and a local
scale-to-zero front that runs it as a function platform would: one process per instance, one
request at a time, a cold start when no instance is idle, idle instances retired.

``gateway`` converts HTTP to API Gateway v2 events and back; ``handler`` builds the
``handler(event, context)``; ``entry`` is the module a platform loads; ``instance`` is one
instance's process; ``pool`` the scaling rule; ``front`` the HTTP server; ``client`` reads the
front's own figures. The front is an emulation of the scaling rule, not a platform.
"""
