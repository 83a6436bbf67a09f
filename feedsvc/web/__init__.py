"""Serving what the build wrote: the WSGI app, custom feeds, polite polling, metrics, the watcher, WebSub."""
