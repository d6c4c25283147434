"""heroes_api: the FastAPI SQL tutorial's Hero API as an async, migrated, production service."""

__version__ = "1.0.0"
