"""The route table: every URL the app serves, apart from the views that answer them."""

from __future__ import annotations

from aiohttp import web

from comparimg.web import (
    openapi,
    security,
    views_bulk,
    views_daemon,
    views_decisions,
    views_model,
    views_review,
)

ROUTES = (
    ("GET", "/api/status", views_daemon.get_status),
    ("GET", "/api/config", views_daemon.get_config),
    ("PATCH", "/api/config", views_daemon.patch_config),
    ("POST", "/api/jobs", views_daemon.post_job),
    ("GET", "/api/jobs", views_daemon.list_jobs),
    ("GET", "/api/jobs/{id}", views_daemon.get_job),
    ("DELETE", "/api/jobs/{id}", views_daemon.cancel_job),
    ("GET", "/api/groups", views_review.list_groups),
    ("GET", "/api/groups/{id}", views_review.get_group),
    ("POST", "/api/groups/{id}/confirm-duplicates", views_model.confirm_duplicates),
    ("POST", "/api/groups/{id}/not-similar", views_model.not_similar),
    ("GET", "/api/files/{id}/thumbnail", views_review.file_thumbnail),
    ("GET", "/api/files/{id}/content", views_review.file_content),
    ("POST", "/api/decisions", views_decisions.post_decision),
    ("POST", "/api/decisions/bulk", views_bulk.post_bulk),
    ("GET", "/api/decisions/bulk", views_bulk.list_bulk),
    ("GET", "/api/decisions/bulk/{id}", views_bulk.get_bulk),
    ("DELETE", "/api/decisions/bulk/{id}", views_bulk.delete_bulk),
    ("POST", "/api/undo/batch/{batch_id}", views_bulk.undo_batch),
    ("GET", "/api/decisions", views_decisions.list_decisions),
    ("DELETE", "/api/decisions/{id}", views_decisions.delete_decision),
    ("POST", "/api/decisions/apply", views_decisions.apply_queue),
    ("POST", "/api/undo/{action_id}", views_decisions.undo),
    ("GET", "/api/actions", views_decisions.list_actions),
    ("GET", "/api/model", views_model.get_model),
    ("POST", "/api/model/retrain", views_model.post_retrain),
    ("POST", "/api/model/restore", views_model.post_restore),
    ("GET", "/api/model/verdict", views_model.get_verdict),
    ("GET", "/api/export", views_daemon.get_export),
    ("GET", "/api/events", views_daemon.events),
    ("GET", "/api/openapi.json", openapi.get_openapi),
    ("GET", "/metrics", views_daemon.metrics),
    ("GET", "/login", security.login),
    ("GET", "/", views_daemon.index_page),
)


def add_routes(app: web.Application) -> None:
    """Register ROUTES and the page's static folders on the app."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    static = views_daemon.static_root()
    for folder in ("css", "js"):
        if (static / folder).is_dir():
            app.router.add_static(f"/{folder}", static / folder, follow_symlinks=False)
