"""Spike 5's POC servers: one shared aiohttp server (server.py) and one Auth plug-in per option."""
