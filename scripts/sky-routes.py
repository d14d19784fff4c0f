"""Prints every route of the SkyPilot API server in this Python's environment, one
`METHOD PATH` a line, sorted: the HTTP routes its OpenAPI lists and its websocket routes
(as GET, the method of a websocket's upgrade). scripts/test.sh compares it with
tests/fixtures/skypilot-0.14.1-routes.txt, the list the gateway's table is checked against.
"""
import os
import sys

os.environ.setdefault('SKYPILOT_DISABLE_USAGE_COLLECTION', '1')

from starlette.routing import WebSocketRoute  # noqa: E402

from sky.server import server  # noqa: E402

lines = set()
for path, methods in server.app.openapi().get('paths', {}).items():
    for method in methods:
        lines.add(f'{method.upper()} {path}')
for route in server.app.routes:
    if isinstance(route, WebSocketRoute) or type(route).__name__ == 'APIWebSocketRoute':
        lines.add(f'GET {route.path}')
sys.stdout.write(''.join(f'{l}\n' for l in sorted(lines)))
