"""The REST target: FastAPI on uvicorn, speaking the canonical schema."""
