"""A stand-in function instance for the pool's tests: it speaks the instance protocol of
``targets.function.instance`` (a ready line, then one answer line per event line) without
importing the app, so it starts in a few tens of ms. Each answer names its process."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    print(json.dumps({"ready": True, "init_ms": 0.0}), flush=True)
    for line in sys.stdin:
        event = json.loads(line)["event"]
        body = json.dumps({"pid": os.getpid(), "path": event["rawPath"]})
        answer = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
