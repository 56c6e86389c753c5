"""latentdial/v1: the API's generated stubs (``make protos``) and the limits both ends of the wire share."""

#: Largest gRPC message in MiB that the server accepts and the client allows, unless configured
#: otherwise. 1,024 images of 64x64x3 float32 are 48 MiB; the rest is room for protobuf framing.
DEFAULT_MAX_MESSAGE_MB = 64

#: Most edits in one EditAttributes request, and most pins in one Generate request. A model has a
#: few dozen latent dimensions at most, so more operations than this are a mistake, not a need.
MAX_EDITS = 64

#: Most targets (dimensions plus factors) one Traverse request may name. The grid (sources x
#: targets x steps) is also bounded by the server's ``max_request_items``; this bound holds before
#: the server looks at anything else, so a list of thousands of targets costs nothing.
MAX_TRAVERSE_TARGETS = 256

#: Steps of one traversal, from MIN_TRAVERSE_STEPS to MAX_TRAVERSE_STEPS.
MIN_TRAVERSE_STEPS = 2
MAX_TRAVERSE_STEPS = 64
