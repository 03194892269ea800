"""The WebSocket routes: `$connect` / `$disconnect` (connect.py) and `$default` (router.py)."""
