"""Ray Serve app (REST, WebSocket alerts), auth, and the ``wellpulse`` CLI."""
