"""Schemathesis hooks for Imagegram: tus PATCH bodies are plain bytes."""
import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
