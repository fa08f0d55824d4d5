"""The HTTP layer: app factory, routes, auth, error handling and response schemas."""
