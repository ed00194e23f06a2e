-- wrk: the same POST as servelab's REST driver and the plain Locust user
wrk.method = "POST"
wrk.body = '{"instances": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]}'
wrk.headers["Content-Type"] = "application/json"
