"""The web room: the aiohttp app (JSON API, review page, events, metrics). The only room that speaks HTTP."""

from comparimg.web.app import create_app, login_url, serve

__all__ = ["create_app", "login_url", "serve"]
