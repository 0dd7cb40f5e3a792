"""Worker memory of the ``infer`` stage vs the size of the fileset (issue 13).

Runs :func:`hepnn_coffea.evaluation.stages.infer` (flat-jet workflow, ``processor.Runner``
with the ``dask`` executor) over N hard links (``os.link``) of the bundled
``tests/samples/topqcd_test_top.root`` (one ``test`` dataset with N files), once per N of
``--copies``, each time on a fresh ``distributed.LocalCluster`` (``--workers`` processes, one
thread each) so that no peak carries over from one run to the next. The peak resident memory
of every worker process is measured two ways:

- ``sampled``: ``psutil.Process(pid).memory_info().rss`` of each worker pid, read every
  ``--interval`` seconds (default 0.1) by a background thread of this process;
- ``ru_maxrss``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read on each worker with
  ``client.run`` after the run (the kernel's high-water mark; it cannot miss a short peak).

It prints per worker the RSS after start-up, both peaks and the RSS at the end for every N,
the ratio of the largest N's peak to the smallest N's (per worker, and of the largest worker
peak; goal <= 1.2), the jets scored and the wall time of each run, and the RSS of every worker
at 25/50/75/100% of each run (growth shows as a rising row). The client (this process) is
sampled too: it receives the accumulated output.

Without ``--model`` the script builds one first, in subprocesses so this process stays free of
torch: ``hepnn preprocess`` of ``tests/samples/fileset.json`` with ``models/data/top_kin.yaml``,
``hepnn train models/pfn.yaml`` for 1 epoch, ``hepnn export`` (about a minute on 2 cores).
(The weaver-core fixture ``tests/fixtures/weaver_pfn/pfn.onnx`` cannot be used: ``infer`` takes
no ``data_config`` and needs the config embedded by ``hepnn export``.)

Usage::

    .venv/bin/python -m bench.timing.bench_memory [--model pfn.onnx] [--copies 10,100] [--workers 2]
                                           [--chunksize 50000] [--json memory.json]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from bench.common import DATA_CONFIG, MODELS, ROOT, SAMPLES, write_json
from bench.rss import RssSampler, maxrss_bytes, mib

SAMPLE_FILE = SAMPLES / "topqcd_test_top.root"
QUARTERS = (0.25, 0.5, 0.75, 1.0)


def build_model(tmp: pathlib.Path) -> pathlib.Path:
    """Preprocess the bundled samples, train ``models/pfn.yaml`` for 1 epoch, export (CLI subprocesses).

    Subprocesses keep this process free of torch, so its own memory stays that of a coffea client.

    Parameters
    ----------
    tmp
        Scratch folder.

    Returns
    -------
    pathlib.Path
        The exported ONNX file.
    """
    shards, run_dir, model = tmp / "shards", tmp / "run", tmp / "pfn.onnx"
    cli = [sys.executable, "-m", "hepnn_coffea.cli"]
    steps = [
        [
            *cli,
            "preprocess",
            str(SAMPLES / "fileset.json"),
            "-c",
            str(DATA_CONFIG),
            "-o",
            str(shards),
            "--executor",
            "iterative",
        ],
        [
            *cli,
            "train",
            str(MODELS / "pfn.yaml"),
            "--shards",
            str(shards),
            "-o",
            str(run_dir),
            "--set",
            "training.epochs=1",
            "--no-progress",
        ],
        [*cli, "export", str(run_dir), "-o", str(model)],
    ]
    for cmd in steps:
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"  {' '.join(cmd[3:5])}: {time.perf_counter() - start:.1f} s", flush=True)
    return model


def linked_fileset(folder: pathlib.Path, n: int) -> dict[str, Any]:
    """One ``test`` dataset (sample ``top``) of ``n`` hard links of the bundled test file.

    Parameters
    ----------
    folder
        Where the links are made (reused if present).
    n
        Number of links.

    Returns
    -------
    dict
        The coffea fileset.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n):
        path = folder / f"top_{i:04d}.root"
        if not path.exists():
            os.link(SAMPLE_FILE, path)
        files[str(path)] = "tree"
    return {"top_test": {"files": files, "metadata": {"sample": "top", "split": "test"}}}


def run_once(
    model: pathlib.Path,
    n: int,
    files_dir: pathlib.Path,
    out_dir: pathlib.Path,
    *,
    workers: int,
    chunksize: int,
    batch_size: int,
    interval: float,
) -> dict[str, Any]:
    """``infer`` over ``n`` linked files on a fresh LocalCluster; the memory of every worker.

    Parameters
    ----------
    model
        ONNX file of ``hepnn export``.
    n
        Number of linked files.
    files_dir
        Folder of the links.
    out_dir
        Output folder of ``infer``.
    workers
        LocalCluster worker processes (one thread each).
    chunksize
        Entries per chunk.
    batch_size
        Jets per onnxruntime call.
    interval
        RSS sampling period in seconds.

    Returns
    -------
    dict
        Files, jets, wall time, per-worker and client memory, number of samples.
    """
    from distributed import Client, LocalCluster

    from hepnn_coffea.evaluation.stages import infer

    fileset = linked_fileset(files_dir, n)
    options = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        pids = client.run(os.getpid)  # {worker address: pid}
        names = {addr: f"worker {i}" for i, addr in enumerate(sorted(pids))}
        sampler = RssSampler({names[a]: p for a, p in pids.items()} | {"client": os.getpid()}, interval)
        sampler.sample()
        idle = {name: sampler.samples[name][-1][1] for name in sampler.procs}
        sampler.start()
        start = time.perf_counter()
        address = cluster.scheduler_address
        info = infer(
            model,
            fileset,
            out_dir,
            split="test",
            executor="dask",
            scheduler=address,
            chunksize=chunksize,
            batch_size=batch_size,
        )
        stop = time.perf_counter()
        sampler.stop()
        maxrss = client.run(maxrss_bytes)
        end_rss = client.run(lambda: psutil.Process().memory_info().rss)
        if set(client.run(os.getpid).items()) != set(pids.items()):
            print(f"  WARNING: a worker was restarted during the {n}-file run", flush=True)
    per_worker = {}
    for addr, name in sorted(names.items(), key=lambda kv: kv[1]):
        per_worker[name] = {
            "pid": pids[addr],
            "idle_rss": idle[name],
            "peak_sampled": sampler.peak(name),
            "ru_maxrss": maxrss[addr],
            "end_rss": end_rss[addr],
            "rss_at_25_50_75_100pct": sampler.at_fractions(name, start, stop, QUARTERS),
        }
    client_proc = {
        "idle_rss": idle["client"],
        "peak_sampled": sampler.peak("client", since=start),
        "rss_at_25_50_75_100pct": sampler.at_fractions("client", start, stop, QUARTERS),
    }
    return {
        "files": n,
        "jets": info["n_jets"],
        "wall_s": stop - start,
        "workers": per_worker,
        "client": client_proc,
        "samples": min(len(v) for v in sampler.samples.values()),
    }


def report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the side-by-side tables; return the ratios (largest N vs smallest N).

    Parameters
    ----------
    runs
        Results of :func:`run_once`, smallest N first (each with ``chunks`` added).

    Returns
    -------
    dict
        Ratios per process, the worst ratios and the load average.
    """
    first, last = runs[0], runs[-1]
    load = os.getloadavg()
    print(f"\nload average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
    print("\n| files | chunks | jets scored | wall [s] | jets/s |")
    print("|---|---|---|---|---|")
    for r in runs:
        rate = r["jets"] / r["wall_s"]
        print(f"| {r['files']} | {r['chunks']} | {r['jets']:,} | {r['wall_s']:.1f} | {rate:,.0f} |")
    head = " / ".join(str(r["files"]) for r in runs)
    print(
        f"\nRSS per worker process [MiB] for {head} files: idle = after start-up; peak sampled every "
        f"0.1 s; ru_maxrss = kernel high-water mark; ratio = {last['files']} / {first['files']} files"
    )
    print("\n| process | idle | peak (sampled) | peak (ru_maxrss) | ratio (sampled) | ratio (ru_maxrss) |")
    print("|---|---|---|---|---|---|")
    keys = ("peak_sampled", "ru_maxrss")
    rows = {
        name: {k: [r["workers"][name][k] for r in runs] for k in ("idle_rss", *keys)}
        for name in first["workers"]
    }
    rows["max over workers"] = {k: [max(w[k] for w in r["workers"].values()) for r in runs] for k in keys}
    ratios = {}
    for name, row in rows.items():
        ratios[name] = {k: row[k][-1] / row[k][0] for k in keys}
        idle = " / ".join(map(mib, row["idle_rss"])) if "idle_rss" in row else "-"
        peaks = " | ".join(" / ".join(map(mib, row[k])) for k in keys)
        ratio = " | ".join(f"{ratios[name][k]:.3f}" for k in keys)
        print(f"| {name} | {idle} | {peaks} | {ratio} |")
    cp = [r["client"]["peak_sampled"] for r in runs]
    client_idle = " / ".join(mib(r["client"]["idle_rss"]) for r in runs)
    client_peak = " / ".join(map(mib, cp))
    print(f"| client (this process) | {client_idle} | {client_peak} | - | {cp[-1] / cp[0]:.3f} | - |")
    print("\nRSS over each run [MiB] at 25% / 50% / 75% / 100% of its wall time, and after the run:")
    for r in runs:
        for name, w in r["workers"].items():
            print(
                f"  {r['files']:>4} files, {name}: {' / '.join(map(mib, w['rss_at_25_50_75_100pct']))}; "
                f"after {mib(w['end_rss'])}"
            )
        client_row = " / ".join(map(mib, r["client"]["rss_at_25_50_75_100pct"]))
        print(f"  {r['files']:>4} files, client: {client_row}")
    worst = max(ratios["max over workers"].values())
    each = max(max(v.values()) for v in ratios.values())
    verdict = "OK" if worst <= 1.2 else "ABOVE GOAL"
    print(
        f"\nratio of the largest worker peak {worst:.3f} (goal <= 1.2): {verdict}; "
        f"largest per-worker ratio {each:.3f}"
    )
    print(
        "(workers are numbered by address: worker i of one run is not the same process as worker i of "
        "another and may have had a different share of the chunks)"
    )
    return {"ratios": ratios, "worst_ratio": worst, "worst_per_worker_ratio": each, "loadavg": load}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run ``infer`` for every N of ``--copies`` and print the memory tables.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the settings, every run and the ratios.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path, help="ONNX file of 'hepnn export' (default: build one)")
    parser.add_argument("--copies", default="10,100", help="comma-separated numbers of file copies")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (1 thread each)")
    parser.add_argument("--chunksize", type=int, default=50_000, help="entries per chunk (the file has 500)")
    parser.add_argument("--batch-size", type=int, default=512, help="jets per onnxruntime call")
    parser.add_argument("--interval", type=float, default=0.1, help="RSS sampling period in seconds")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results there")
    args = parser.parse_args(argv)
    copies = sorted(int(c) for c in args.copies.split(","))
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        model = args.model
        if model is None:
            print("building a 1-epoch PFN (preprocess, train, export) ...", flush=True)
            model = build_model(tmp / "model")
        import uproot

        entries = uproot.open(SAMPLE_FILE)["tree"].num_entries
        runs = []
        for n in copies:
            print(
                f"infer over {n} hard links of {SAMPLE_FILE.name} ({entries} entries each), "
                f"fresh LocalCluster with {args.workers} workers ...",
                flush=True,
            )
            r = run_once(
                model,
                n,
                tmp / "files",
                tmp / f"out_{n}",
                workers=args.workers,
                chunksize=args.chunksize,
                batch_size=args.batch_size,
                interval=args.interval,
            )
            r["chunks"] = n * -(-entries // args.chunksize)
            print(f"  {r['jets']:,} jets in {r['wall_s']:.1f} s", flush=True)
            runs.append(r)
    result = {
        "model": str(args.model) if args.model else "1-epoch PFN built by the script",
        "copies": copies,
        "chunksize": args.chunksize,
        "runs": runs,
        **report(runs),
    }
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
