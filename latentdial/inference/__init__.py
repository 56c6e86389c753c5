"""Generated stubs of the Open Inference Protocol v2 gRPC service (protos/inference/; `make protos`)."""
