"""Inference throughput inside processors vs bare onnxruntime and coffea.ml_tools, and worker scaling.

Prints, in one run on the same machine (jets/s, best of ``--repeat`` after a warm-up):

(a) bare onnxruntime on ready input arrays (1 intra-op thread, batches of 512, as OnnxTagger);
(b) ``OnnxTagger(events)`` on events already read (features + onnxruntime: the processor's
    work excluding file reading), and the full ``infer`` stage (read + features + model +
    hists + table, iterative executor);
(c) ``coffea.ml_tools.torch_wrapper`` running the same network as TorchScript, with the same
    features computed in ``prepare_awkward`` (torch's default threads, and 1 thread);
(d) the ``infer`` stage on a running LocalCluster with 1 and with 2 worker processes.

Ratios printed: (b)/(a) (goal >= 0.8), (b)/(c) (goal >= 2), 2-worker/1-worker (goal >= 1.7).

    .venv/bin/python bench/bench_inference.py                 # builds a 1-epoch PFN on the bundled samples
    .venv/bin/python bench/bench_inference.py --run-dir runs/pfn --json bench_inference.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
from typing import Any

import awkward as ak
import numpy as np
import torch
import uproot

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_throughput import DEFAULT_FILES, ORT_BATCH, build_model, best_of, fileset_of  # noqa: E402

import hepnn_coffea  # noqa: E402
from hepnn_coffea.evaluation.stages import infer  # noqa: E402
from hepnn_coffea.export import export_onnx  # noqa: E402
from hepnn_coffea.features import compute_features  # noqa: E402
from hepnn_coffea.training.trainer import load_network  # noqa: E402


def torchscript(run_dir: pathlib.Path, example: dict[str, np.ndarray], path: pathlib.Path) -> list[str]:
    """The run's network + softmax as a TorchScript file (what ml_tools.torch_wrapper loads)."""
    net, _ = load_network(run_dir)

    class WithSoftmax(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(*inputs), dim=1)

    inputs = tuple(torch.from_numpy(example[g][:2]) for g in net.input_groups)
    torch.jit.trace(WithSoftmax().eval(), inputs).save(str(path))
    return net.input_groups


def ml_tools_wrapper(path: pathlib.Path, config: Any, groups: list[str]) -> Any:
    from coffea.ml_tools import torch_wrapper

    class Wrapper(torch_wrapper):
        def prepare_awkward(self, events: ak.Array) -> tuple[tuple[Any, ...], dict[str, Any]]:
            batch = compute_features(events, config, selection="test_time_selection", with_labels=False)
            return tuple(ak.Array(batch.inputs[g]) for g in groups), {}

    return Wrapper(str(path))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", type=pathlib.Path, default=DEFAULT_FILES)
    parser.add_argument("--run-dir", type=pathlib.Path, default=None, help="trained run (default: build one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunksize", type=int, default=2500, help="entries per chunk for the scaling runs")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        if args.run_dir is None:
            build_model(tmp)
            run_dir = tmp / "model_run"
        else:
            run_dir = args.run_dir
        model = tmp / "model.onnx"
        export_onnx(run_dir, model)
        tagger = hepnn_coffea.OnnxTagger(model)
        config = tagger.config
        events = [uproot.open(f)["tree"].arrays(config.required_branches("test_time_selection", inputs_only=True))
                  for f in args.files]  # fmt: skip
        n_jets = sum(len(e) for e in events)
        batches = [compute_features(e, config, selection="test_time_selection", with_labels=False) for e in events]
        session = hepnn_coffea.inference.tagger._session(str(model), 1)
        feeds = [{i.name: np.ascontiguousarray(b.inputs[i.name]) for i in session.get_inputs()} for b in batches]

        def bare_ort() -> None:
            for feed in feeds:
                n = len(next(iter(feed.values())))
                for start in range(0, n, ORT_BATCH):
                    session.run(None, {k: v[start : start + ORT_BATCH] for k, v in feed.items()})

        groups = torchscript(run_dir, batches[0].inputs, tmp / "model.pt")
        wrapper = ml_tools_wrapper(tmp / "model.pt", config, groups)
        out = tmp / "infer"
        clear = lambda: shutil.rmtree(out, ignore_errors=True)  # noqa: E731
        fileset = fileset_of(args.files)
        rates = {
            "a_bare_ort": n_jets / best_of(bare_ort, args.repeat),
            "b_tagger_on_read_events": n_jets / best_of(lambda: [tagger(e) for e in events], args.repeat),
            "b_infer_stage_iterative": n_jets / best_of(lambda: infer(model, fileset, out, executor="iterative"),
                                                         args.repeat, clear),  # fmt: skip
        }
        threads = torch.get_num_threads()
        rates[f"c_ml_tools_torch_{threads}_threads"] = n_jets / best_of(lambda: [wrapper(e) for e in events], args.repeat)
        torch.set_num_threads(1)
        rates["c_ml_tools_torch_1_thread"] = n_jets / best_of(lambda: [wrapper(e) for e in events], args.repeat)
        torch.set_num_threads(threads)
        from distributed import LocalCluster

        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
                run = lambda: infer(model, fileset, out, executor="dask", scheduler=c.scheduler_address,  # noqa: E731
                                    chunksize=args.chunksize)
                rates[f"d_infer_dask_{workers}_worker"] = n_jets / best_of(run, args.repeat, clear)
    c_best = max(v for k, v in rates.items() if k.startswith("c_"))
    ratios = {
        "b_tagger / a_bare_ort": rates["b_tagger_on_read_events"] / rates["a_bare_ort"],
        "b_tagger / c_ml_tools (best)": rates["b_tagger_on_read_events"] / c_best,
        "b_infer_stage / c_ml_tools (best)": rates["b_infer_stage_iterative"] / c_best,
        "d_2_workers / d_1_worker": rates["d_infer_dask_2_worker"] / rates["d_infer_dask_1_worker"],
    }
    print(f"hepnn_coffea {hepnn_coffea.__version__}; {n_jets} jets; best of {args.repeat}")
    for key, value in rates.items():
        print(f"{key:45s} {value:12,.0f} jets/s")
    for key, value in ratios.items():
        print(f"{key:45s} {value:12.3f}")
    result = {"n_jets": n_jets, "jets_per_s": rates, "ratios": ratios}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
