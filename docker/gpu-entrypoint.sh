#!/bin/sh
# Build TensorRT engines for every model of the repository into the engine cache (a no-op
# for engines already cached for this GPU and TensorRT version), then serve.
# Arguments are passed on to `latentdial serve`.
set -eu

repository="${LATENTDIAL_REPOSITORY:-/models}"
cache="${LATENTDIAL_ENGINE_CACHE:-/engines}"

if [ "${LATENTDIAL_SKIP_ENGINE_BUILD:-0}" != "1" ]; then
    echo "latentdial: building TensorRT engines for ${repository} into ${cache} (cached after the first start)"
    latentdial build-engine "${repository}" --cache-dir "${cache}"
fi

exec latentdial serve "$@"
