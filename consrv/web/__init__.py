"""The read-only browser view (docs/web.md): a front beside ssh/, on the core's public API.

`server` (hypercorn's trio worker), `app` (routes, headers, who may see what), `auth`
(sessions, the trusted proxy's header, Origin), `stream` (one console over a
WebSocket), `logs` (log files, view, download, search), `stats` (metrics). Imports
the core only, never another front.
"""
