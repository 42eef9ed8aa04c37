"""The HTTP entrypoint: `create_app(settings)` builds the FastAPI app."""

from reynolds.entrypoints.http.app import create_app

__all__ = ["create_app"]
