"""Wire contracts: how one payload becomes a request, and how an answer is judged. One module per
contract (servelab's own, the Open Inference Protocol, KServe V1, BentoML, a request template);
``registry.PROTOCOLS`` is the one table of them. Drivers carry the bytes; contracts say what the
bytes are."""
