"""The web pages served by a node (templates, static files, views)."""
