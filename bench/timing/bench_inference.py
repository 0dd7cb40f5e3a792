"""Inference throughput inside processors vs bare onnxruntime and coffea.ml_tools, and worker scaling.

Prints, in one run on the same machine (jets/s, best of ``--repeat`` after a warm-up; the
candidates of each group are timed in interleaved rounds so a shared machine's changing load
hits them alike, and the load average is printed):

(a) bare onnxruntime on ready input arrays (1 intra-op thread, batches of 512, as OnnxTagger);
(b) ``OnnxTagger(events)`` on events already read (features + onnxruntime: the processor's
    work excluding file reading), and the full ``infer`` stage (read + features + model +
    hists + table, iterative executor);
(c) ``coffea.ml_tools.torch_wrapper`` running the same network as TorchScript, with the same
    features computed in ``prepare_awkward`` (torch's default threads, and 1 thread);
(d) the ``infer`` stage on a running LocalCluster with 1 and with 2 worker processes.

Ratios printed: (b)/(a) (goal >= 0.8), (b)/(c) (goal >= 2), 2-worker/1-worker (goal >= 1.7).

    .venv/bin/python -m bench.timing.bench_inference    # builds a 1-epoch PFN on the bundled samples
    .venv/bin/python -m bench.timing.bench_inference --run-dir runs/pfn --json bench_inference.json
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import awkward as ak
import numpy as np
import torch
import uproot

import hepnn_coffea
from bench.common import (
    DEFAULT_FILES,
    ORT_BATCH,
    build_pfn,
    fileset_of,
    interleaved_times,
    run_in_batches,
    write_json,
)
from hepnn_coffea.evaluation.stages import infer
from hepnn_coffea.export import export_onnx
from hepnn_coffea.features import compute_features
from hepnn_coffea.training.trainer import load_network


def torchscript(run_dir: pathlib.Path, example: dict[str, np.ndarray], path: pathlib.Path) -> list[str]:
    """Save the run's network + softmax as a TorchScript file (what ``ml_tools.torch_wrapper`` loads).

    Parameters
    ----------
    run_dir
        Trained run.
    example
        Model inputs by group (two jets are traced).
    path
        Output file.

    Returns
    -------
    list of str
        The network's input groups, in call order.
    """
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
    """A ``coffea.ml_tools.torch_wrapper`` of the TorchScript file computing the features in
    ``prepare_awkward``.

    Parameters
    ----------
    path
        TorchScript file (:func:`torchscript`).
    config
        The model's data config.
    groups
        Input groups in call order.

    Returns
    -------
    coffea.ml_tools.torch_wrapper
        Callable on events.
    """
    from coffea.ml_tools import torch_wrapper

    class Wrapper(torch_wrapper):
        def prepare_awkward(self, events: ak.Array) -> tuple[tuple[Any, ...], dict[str, Any]]:
            batch = compute_features(events, config, selection="test_time_selection", with_labels=False)
            return tuple(ak.Array(batch.inputs[g]) for g in groups), {}

    return Wrapper(str(path))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time every candidate and print rates and ratios.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns jets, rates (jets/s), ratios, CPUs and
    load averages.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", nargs="+", type=pathlib.Path, default=DEFAULT_FILES)
    parser.add_argument("--run-dir", type=pathlib.Path, default=None, help="trained run (default: build one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunksize", type=int, default=2500, help="entries per chunk for the scaling runs")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        run_dir = build_pfn(tmp) if args.run_dir is None else args.run_dir
        model = tmp / "model.onnx"
        export_onnx(run_dir, model)
        tagger = hepnn_coffea.OnnxTagger(model)
        config = tagger.config
        events = [
            uproot.open(f)["tree"].arrays(config.required_branches("test_time_selection", inputs_only=True))
            for f in args.files
        ]
        n_jets = sum(len(e) for e in events)
        batches = [
            compute_features(e, config, selection="test_time_selection", with_labels=False) for e in events
        ]
        session = hepnn_coffea.inference.tagger._session(str(model), 1)
        feeds = [
            {i.name: np.ascontiguousarray(b.inputs[i.name]) for i in session.get_inputs()} for b in batches
        ]

        groups = torchscript(run_dir, batches[0].inputs, tmp / "model.pt")
        wrapper = ml_tools_wrapper(tmp / "model.pt", config, groups)
        out = tmp / "infer"
        clear = lambda: shutil.rmtree(out, ignore_errors=True)  # noqa: E731
        fileset = fileset_of(args.files)
        run_infer = lambda: infer(model, fileset, out, executor="iterative")  # noqa: E731
        threads = torch.get_num_threads()

        def jets_per_s(fns: dict[str, Callable[[], Any]]) -> dict[str, float]:
            return {k: n_jets / t for k, t in interleaved_times(fns, args.repeat, clear).items()}

        def ml_tools(n_threads: int) -> Any:
            def run() -> None:
                torch.set_num_threads(n_threads)
                try:
                    [wrapper(e) for e in events]
                finally:
                    torch.set_num_threads(threads)

            return run

        load = {"before": os.getloadavg()}
        rates = jets_per_s(
            {
                "a_bare_ort": lambda: run_in_batches(session, feeds, ORT_BATCH),
                "b_tagger_on_read_events": lambda: [tagger(e) for e in events],
                "b_infer_stage_iterative": run_infer,
                f"c_ml_tools_torch_{threads}_threads": ml_tools(threads),
                "c_ml_tools_torch_1_thread": ml_tools(1),
            }
        )
        from distributed import LocalCluster

        with (
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c1,
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c2,
        ):

            def on(cluster: Any) -> Any:
                return lambda: infer(
                    model,
                    fileset,
                    out,
                    executor="dask",
                    scheduler=cluster.scheduler_address,
                    chunksize=args.chunksize,
                )

            rates.update(jets_per_s({"d_infer_dask_1_worker": on(c1), "d_infer_dask_2_worker": on(c2)}))
        load["after"] = os.getloadavg()
    c_best = max(v for k, v in rates.items() if k.startswith("c_"))
    ratios = {
        "b_tagger / a_bare_ort": rates["b_tagger_on_read_events"] / rates["a_bare_ort"],
        "b_tagger / c_ml_tools (best)": rates["b_tagger_on_read_events"] / c_best,
        "b_infer_stage / c_ml_tools (best)": rates["b_infer_stage_iterative"] / c_best,
        "d_2_workers / d_1_worker": rates["d_infer_dask_2_worker"] / rates["d_infer_dask_1_worker"],
    }
    print(
        f"hepnn_coffea {hepnn_coffea.__version__}; {n_jets} jets; best of {args.repeat} (interleaved); "
        f"{os.cpu_count()} CPUs, load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} after"
    )
    for key, value in rates.items():
        print(f"{key:45s} {value:12,.0f} jets/s")
    for key, value in ratios.items():
        print(f"{key:45s} {value:12.3f}")
    result = {
        "n_jets": n_jets,
        "jets_per_s": rates,
        "ratios": ratios,
        "cpus": os.cpu_count(),
        "load_average": load,
    }
    write_json(args.json, result, indent=2)
    return result


if __name__ == "__main__":
    main()
