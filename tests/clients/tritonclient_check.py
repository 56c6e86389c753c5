"""Run tritonclient (gRPC and HTTP) against a latentdial server; runs in .venv-tritonclient, not the project venv.

tritonclient pins protobuf < 7 and latentdial needs protobuf >= 7, so tests/serving/test_oip.py runs this
script with the tritonclient venv's Python. Usage:

    python tritonclient_check.py GRPC_ADDRESS HTTP_ADDRESS MODEL IN.npz OUT.npz

IN.npz holds ``images_f32`` (N, H, W, C) float32 and ``images_u8`` uint8, and ``latents`` (N, D).
OUT.npz gets every result array; the metadata and readiness answers are printed as one JSON line.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def infer(client, module, model: str, name: str, array: np.ndarray, datatype: str, outputs: list[str], **kw):
    x = module.InferInput(name, list(array.shape), datatype)
    if module is httpclient:
        x.set_data_from_numpy(array, binary_data=kw.pop("binary_in", True))
        requested = [module.InferRequestedOutput(o, binary_data=kw.pop("binary_out", True)) for o in outputs]
    else:
        x.set_data_from_numpy(array)
        requested = [module.InferRequestedOutput(o) for o in outputs]
    result = client.infer(model, [x], outputs=requested, **kw)
    return {o: result.as_numpy(o) for o in outputs}


def main() -> int:
    grpc_address, http_address, model, in_path, out_path = sys.argv[1:6]
    data = np.load(in_path)
    f32, u8, z = data["images_f32"], data["images_u8"], data["latents"]
    enc, dec = f"{model}.encoder", f"{model}.decoder"
    out: dict[str, np.ndarray] = {}
    report: dict[str, object] = {}

    g = grpcclient.InferenceServerClient(grpc_address)
    report["grpc_live"] = g.is_server_live()
    report["grpc_ready"] = g.is_server_ready()
    report["grpc_model_ready"] = g.is_model_ready(enc)
    report["grpc_unknown_model_ready"] = g.is_model_ready(f"{model}.nothing")
    report["grpc_server_metadata"] = g.get_server_metadata(as_json=True)
    report["grpc_encoder_metadata"] = g.get_model_metadata(enc, as_json=True)
    report["grpc_decoder_metadata"] = g.get_model_metadata(dec, as_json=True)
    for k, v in infer(g, grpcclient, enc, "images", f32, "FP32", ["mean", "log_var"]).items():
        out[f"grpc_f32_{k}"] = v
    out["grpc_u8_mean"] = infer(g, grpcclient, enc, "images", u8, "UINT8", ["mean"])["mean"]
    out["grpc_decoded"] = infer(g, grpcclient, dec, "latents", z, "FP32", ["images"])["images"]
    try:
        infer(g, grpcclient, enc, "images", f32[:, :4], "FP32", ["mean"])
        report["grpc_bad_shape"] = "no error"
    except Exception as e:  # noqa: BLE001 - the message is what we report
        report["grpc_bad_shape"] = str(e)

    h = httpclient.InferenceServerClient(http_address)
    report["http_live"] = h.is_server_live()
    report["http_ready"] = h.is_server_ready()
    report["http_model_ready"] = h.is_model_ready(enc)
    report["http_server_metadata"] = h.get_server_metadata()
    report["http_encoder_metadata"] = h.get_model_metadata(enc)
    for mode, (bin_in, bin_out) in {"binary": (True, True), "json": (False, False)}.items():
        r = infer(h, httpclient, enc, "images", f32, "FP32", ["mean", "log_var"], binary_in=bin_in, binary_out=bin_out)
        out[f"http_{mode}_mean"], out[f"http_{mode}_log_var"] = r["mean"], r["log_var"]
    out["http_u8_mean"] = infer(h, httpclient, enc, "images", u8, "UINT8", ["mean"])["mean"]
    out["http_decoded"] = infer(h, httpclient, dec, "latents", z, "FP32", ["images"], binary_in=False)["images"]
    try:
        infer(h, httpclient, enc, "images", f32[:, :4], "FP32", ["mean"])
        report["http_bad_shape"] = "no error"
    except Exception as e:  # noqa: BLE001
        report["http_bad_shape"] = str(e)
    np.savez(out_path, **out)
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
