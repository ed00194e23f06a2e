"""servelab load generation (workloads, harness, drivers, Locust users)."""
