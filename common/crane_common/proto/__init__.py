"""Generated protobuf/gRPC modules of the public API (built from crane.proto at install time)."""
