"""Output: models and answers rendered as JSON documents, tables, JUnit and markdown.

Renderers return strings; only the CLI writes them. ``schemas/`` holds the JSON schemas
of every document (docs/json.md).
"""
