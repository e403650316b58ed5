"""Kvittensportalen: the web pages where everyone in the chain acts on a handoff from the link in
their message, and where operators follow the cycle. FastAPI with Jinja2 pages rendered on the
server, over the application database; actions call the same task functions as the command line.

portal → tasks → models; tasks never import the portal (links are made in tasks.portal_tokens)."""
