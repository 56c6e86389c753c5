"""latentdial/v1: the API's generated stubs (``make protos``) and the limits both ends of the wire share."""

#: Largest gRPC message in MiB that the server accepts and the client allows, unless configured
#: otherwise. 1,024 images of 64x64x3 float32 are 48 MiB; the rest is room for protobuf framing.
DEFAULT_MAX_MESSAGE_MB = 64
