"""servelab reports (comparisons, statistics, charts)."""
