"""cranectld: the controller daemon (state, scheduling loop, public gRPC API)."""
