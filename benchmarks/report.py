"""Figures with their targets, the printed table, and the plot of latency against library size."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, "==": operator.eq}


def _figure(
    target: str,
    name: str,
    value: Any,
    op: str | None = None,
    limit: Any = None,
    unit: str = "",
    note: str = "",
) -> dict[str, Any]:
    met = None if op is None or value is None else bool(_OPS[op](value, limit))
    return {
        "target": target,
        "name": name,
        "value": value,
        "unit": unit,
        "goal": f"{op} {limit}" if op else "report",
        "met": met,
        "note": note,
    }


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _auto_figures(results: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """Issue 10: the default kind at every size, its recall, flatness, restart and memory."""
    out: list[dict[str, Any]] = []
    t = results.get("flat_threshold")
    if t:
        curve = ", ".join(f"{int(n) // 1000}k {v['p50_ms']}" for n, v in t["sizes"].items())
        out.append(
            _figure(
                "6 auto",
                f"size where one exact flat scan reaches {t['budget_ms']} ms (auto's threshold)",
                t["threshold"],
                note=f"p50 ms: {curve}",
            )
        )
    for size in sizes:
        q = _get(results, "sizes", str(size), "query")
        if not q or "index" not in q:
            continue
        index, recall = q["index"], q["recall_at_10"]
        param = f", {index['param']} {index['param_value']}" if index["param"] else ""
        out.append(
            _figure(
                "6 auto",
                f"kind auto builds at {size:,}",
                index["kind"],
                note=f"build-time recall@10 text {index['recall_text_at_build']}, "
                f"image {index['recall_image_at_build']}{param}",
            )
        )
        for name, what in (("label_text", "the labels' text vectors"), ("image", "stored image vectors")):
            out.append(_figure("6 auto", f"recall@10 at {size:,}, {what}", recall[name], ">=", 0.95))
        out.append(
            _figure(
                "6 auto",
                f"recall@10 at {size:,}, this run's query texts (random model)",
                recall["query_texts"],
            )
        )
        if index["kind"] != "flat":
            exact = min(q[name]["p50_ms"] for name in ("faiss", "numpy", "numpy_1_thread"))
            out.append(
                _figure(
                    "6 auto",
                    f"fastest exact scan p50 / served {index['kind']} p50 at {size:,}",
                    round(exact / max(1e-9, q["product_search"]["p50_ms"]), 1),
                    ">=" if size >= 1_000_000 else None,
                    10,
                    note=f"{exact} ms vs {q['product_search']['p50_ms']} ms",
                )
            )
    queries = {size: _get(results, "sizes", str(size), "query") for size in sizes}
    queries = {size: q for size, q in queries.items() if q}
    if len(queries) > 1:
        small, large = min(queries), max(queries)
        ratio = round(queries[large]["request"]["p50_ms"] / queries[small]["request"]["p50_ms"], 3)
        out.append(
            _figure(
                "6 auto",
                f"request p50 at {large:,} / at {small:,}",
                ratio,
                "<=" if large >= 1_000_000 else None,
                1.5,
                note=f"{queries[large]['request']['p50_ms']} ms vs {queries[small]['request']['p50_ms']} ms",
            )
        )
    for size in sizes:
        r = _get(results, "sizes", str(size), "restart")
        if not r:
            continue
        out.append(
            _figure(
                "6 auto",
                f"restart: web start to first search / model load alone, at {size:,}",
                r["ratio"],
                "<=",
                1.5,
                note=f"{r['web_first_search_p50_s']} s vs {r['model_load_p50_s']} s ({r['workers']} workers)",
            )
        )
        sf = r["seed_faithful"]
        out.append(
            _figure(
                "6 auto",
                f"seed-faithful restart (re-embed every image), extrapolated to {size:,}",
                sf["extrapolated_s"],
                unit="s",
                note=f"{sf['seconds_per_image']} s per image on {sf['sample_images']} 3 MP JPEGs; "
                f"{sf['vs_web']}x the web start",
            )
        )
    for size in sizes:
        m = _get(results, "sizes", str(size), "memory")
        if not m:
            continue
        first, last = m["by_workers"][0], m["by_workers"][-1]
        out.append(
            _figure(
                "6 auto",
                f"Pss per added web process at {size:,} ({first['workers']} to {last['workers']} workers)",
                m["growth_per_worker_mib"],
                "<=",
                150,
                unit="MiB",
                note=f"total with the master {first['pss_with_master']} to {last['pss_with_master']} MiB",
            )
        )
    return out


def _encoder_figures(results: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """Issue 20: the ONNX Runtime encoder against torch, each in the same run."""
    out: list[dict[str, Any]] = []
    e = results.get("encoder")
    if e:
        t = e["text_1_thread"]
        out.append(
            _figure(
                "20 encoder",
                "text encode p50, one thread: onnx / torch fp32",
                e["text_ratio"],
                "<=",
                0.55,
                note=f"{t['onnx']['p50_ms']} ms vs {t['torch']['p50_ms']} ms; "
                f"int8 {t['onnx_int8']['p50_ms']} ms ({e['text_ratio_int8']}x, not served)",
            )
        )
        out.append(
            _figure(
                "20 encoder",
                "queries with torch's top 10 (onnx fp32)",
                e["same_top10_share"],
                "==",
                1.0,
                note=f"{e['queries']} texts; lowest cosine to torch's vector {e['min_cosine']}",
            )
        )
        i = e["images_16_worker_threads"]
        out.append(
            _figure(
                "20 encoder",
                f"16 images at {e['cores']} threads: onnx / torch fp32",
                e["images_ratio"],
                note=f"{i['onnx']} ms vs {i['torch']} ms; int8 {i['onnx_int8']} ms",
            )
        )
    towers = {"text_1_thread": "text tower, one thread", "images_16_worker_threads": "image tower, 16 images"}
    for key, what in towers.items():
        tower = _get(results, "encoder", "blas_bound", key)
        if tower:
            out.append(
                _figure(
                    "20 encoder",
                    f"{what}: onnx arithmetic rate / BLAS peak at {tower['threads']} threads",
                    tower["share_of_peak"],
                    note=f"{tower['onnx_gflop_per_s']} vs {tower['peak_gflop_per_s']} GFLOP/s; "
                    f"whole run / its products in BLAS {tower['ratio']}",
                )
            )
    ingest = results.get("ingest")
    if ingest and "ratio_vs_torch" in ingest:
        out.append(
            _figure(
                "20 encoder",
                "ingest end to end / torch model alone (today's encoder)",
                ingest["ratio_vs_torch"],
                ">=",
                1.15,
                note=f"{ingest['end_to_end_images_per_s']} vs {ingest['torch_images_per_s']} images/s, "
                f"baselines in {ingest['rounds'] + 1} interleaved rounds",
            )
        )
        out.append(
            _figure(
                "20 encoder",
                f"ingest end to end / the served encoder alone ({ingest['model_runtime']})",
                ingest["ratio"],
                ">=",
                0.9,
                note=f"{ingest['end_to_end_images_per_s']} vs {ingest['model_images_per_s']} images/s",
            )
        )
    for size in sizes:
        q = _get(results, "sizes", str(size), "query")
        if q and size in (10_000, 100_000):
            out.append(
                _figure(
                    "20 encoder",
                    f"text search request p50 / (encode + fastest scan) at {size:,}",
                    q["ratio"],
                    "<=",
                    1.25,
                    note=f"{q['request']['p50_ms']} ms vs {q['baseline_p50_ms']} ms",
                )
            )
        if q and "ratio_scan_after_encode" in q:
            name = q["baseline_search_after_encode"]
            out.append(
                _figure(
                    "20 encoder",
                    f"the same, the scans measured right after an encode, at {size:,}",
                    q["ratio_scan_after_encode"],
                    note=f"{name} {q[name]['p50_ms']} ms; numpy one thread right after an encode "
                    f"{q['numpy_1_thread_after_encode']['p50_ms']} ms, in a loop of scans "
                    f"{q['numpy_1_thread']['p50_ms']} ms",
                )
            )
        own = _get(q or {}, "repeat", "p50_ms")
        if own is not None and size == 10_000:
            out.append(
                _figure(
                    "20 encoder", "request's own work p50 at 10,000 (vector cached)", own, "<=", 8, unit="ms"
                )
            )
    m = _get(results, "sizes", "100000", "memory")
    if m:
        out.append(
            _figure(
                "20 encoder",
                "Pss per added web process at 100,000",
                m["growth_per_worker_mib"],
                "<=",
                60,
                unit="MiB",
            )
        )
    r = _get(results, "sizes", "100000", "restart")
    if r:
        out.append(
            _figure(
                "20 encoder",
                "restart to the first answered search / the encoder's own load, at 100,000",
                r["ratio"],
                "<=",
                1.2,
                note=f"{r['web_first_search_p50_s']} s vs {r['model_load_p50_s']} s",
            )
        )
    for size in sizes:
        t = _get(results, "sizes", str(size), "throughput")
        if t:
            out.append(
                _figure(
                    "20 encoder",
                    f"throughput at concurrency 16 / (cores / (encode + search)) at {size:,}",
                    t["ratio"],
                    ">=",
                    0.8,
                    note=f"{t['requests_per_s']} requests/s",
                )
            )
    return out


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sizes = sorted(int(s) for s in results.get("sizes", {}))
    largest = sizes[-1] if sizes else None

    ingest = results.get("ingest")
    if ingest:
        out.append(
            _figure(
                "1 ingest",
                f"end-to-end / model throughput, batch {ingest['batch']}",
                ingest["ratio"],
                ">=",
                0.9,
                note=f"{ingest['end_to_end_images_per_s']} vs {ingest['model_images_per_s']} images/s, "
                f"{ingest['images']} images",
            )
        )

    for size in sizes:
        q = _get(results, "sizes", str(size), "query")
        if not q:
            continue
        label = f"{size:,}"
        if size <= 100_000:
            out.append(
                _figure(
                    "2 query",
                    f"request p50 / (encode + search) at {label}",
                    q["ratio"],
                    "<=",
                    1.25,
                    note=f"{q['request']['p50_ms']} ms vs {q['baseline_p50_ms']} ms ({q['baseline_search']})",
                )
            )
        out.append(_figure("2 query", f"request p50 at {label}", q["request"]["p50_ms"], unit="ms"))
        out.append(_figure("2 query", f"request p99 at {label}", q["request"]["p99_ms"], unit="ms"))
    for size in sizes:
        q = _get(results, "sizes", str(size), "query")
        if q:
            out.append(
                _figure(
                    "2 query",
                    f"model calls for a repeated query at {size:,}",
                    q["repeat"]["model_calls"],
                    "==",
                    0,
                    note=f"repeated request p50 {q['repeat']['p50_ms']} ms",
                )
            )

    out.extend(_auto_figures(results, sizes))
    out.extend(_encoder_figures(results, sizes))

    for size in sizes:
        for kind in ("ivf", "hnsw"):
            a = _get(results, "sizes", str(size), f"ann_{kind}")
            if not a:
                continue
            tag = f"{kind} at {size:,}"
            out.append(
                _figure("3 scale", f"recall@10 {tag} (near queries)", a["recall_at_10_near"], ">=", 0.95)
            )
            out.append(_figure("3 scale", f"recall@10 {tag} (far, text-like queries)", a["recall_at_10_far"]))
            out.append(
                _figure(
                    "3 scale",
                    f"flat p50 / {kind} p50 at {size:,}",
                    a["speedup_p50"],
                    ">=" if kind == "ivf" else None,
                    10,
                    note=f"{a['flat']['p50_ms']} ms vs {a['approximate']['p50_ms']} ms",
                )
            )
            out.append(_figure("3 scale", f"{kind} build time at {size:,}", a["build_s"], unit="s"))
            out.append(
                _figure(
                    "3 scale",
                    f"{kind} memory at {size:,}",
                    a["index_mib"],
                    unit="MiB file",
                    note=f"private +{a['memory_mib']['private_added']} MiB, "
                    f"mapped {a['memory_mib']['mapped_index_rss']} MiB",
                )
            )

    if largest is not None:
        r = _get(results, "sizes", str(largest), "rebuild")
        if r:
            out.append(
                _figure(
                    "4 rebuild",
                    f"full rebuild from the database at {largest:,}",
                    r["seconds"],
                    "<",
                    60,
                    unit="s",
                    note=f"warm {r['warm_s']} s, cold {r.get('cold_s')} s; reading the index file "
                    f"alone {r['read_index_file_s']} s",
                )
            )
        m = _get(results, "sizes", str(largest), "memory")
        if m:
            last = m["by_workers"][-1]
            shared = m.get("shared", True)
            why = "" if shared else "; this index is small enough to be copied into each process"
            out.append(
                _figure(
                    "4 rebuild",
                    f"copies of the mapped index in {last['workers']} web processes at {largest:,}",
                    m["index_copies"],
                    "<=" if shared else None,
                    1.1,
                    note=f"index {m['index_mib']} MiB; Pss of the mapping summed over the workers{why}",
                )
            )
            out.append(
                _figure(
                    "4 rebuild",
                    f"Pss growth from {m['by_workers'][0]['workers']} to {last['workers']} workers "
                    "/ that many index sizes",
                    m["growth_vs_private_copies"],
                    "<" if shared else None,
                    0.5,
                    note=f"+{m['growth_per_worker_mib']} MiB per added worker (the model, "
                    + ("private scan structures)" if shared else "and its private index copy)"),
                )
            )
        s = _get(results, "sizes", str(largest), "switch")
        if s:
            out.append(
                _figure("4 rebuild", "failed requests during a generation switch", s["errors"], "==", 0)
            )
            out.append(
                _figure(
                    "4 rebuild",
                    "longest silence while the workers load the new generation / p50 before",
                    s.get("gap_vs_p50_before"),
                    "<=",
                    1.5,
                    note=f"{s.get('answered_while_loading')} answers while loading; gap {s['longest_gap_s']} "
                    f"s; {s['workers_loaded']}/{s['workers']} workers loaded it "
                    f"{s['load_after_publish_s']} s after it was published",
                )
            )
            out.append(
                _figure(
                    "4 rebuild",
                    "request p50 before / during the rebuild / while loading / after",
                    s["before"]["p50_ms"],
                    unit="ms",
                    note=" / ".join(
                        str(s.get(k, {}).get("p50_ms")) for k in ("during_rebuild", "while_loading", "after")
                    )
                    + " ms (the rebuild shares the 2 cores)",
                )
            )

    for size in sizes:
        d = _get(results, "sizes", str(size), "duplicates")
        if not d:
            continue
        out.append(
            _figure(
                "6 near-duplicates",
                f"scan / flat kNN search alone at {size:,}",
                d["ratio"],
                note=f"{d['scan_s']} s vs {d['knn_alone_s']} s; of the scan: reading {d['scan_read_s']} s, "
                f"kNN {d['scan_search_s']} s ({'IVF' if d.get('approximate') else 'exact'}); "
                f"{d['groups']} groups",
            )
        )
        if "recall_of_exact_pairs" in d:
            out.append(
                _figure(
                    "6 near-duplicates",
                    f"pairs found / exact pairs at {size:,}",
                    d["recall_of_exact_pairs"],
                    note=f"{d['exact_pairs']} exact pairs at cosine >= {d['threshold']}",
                )
            )
        out.append(_figure("6 near-duplicates", f"scan at {size:,}", d["scan_s"], unit="s"))
    measured = results.get("duplicate_threshold")
    if measured:
        out.append(
            _figure(
                "6 near-duplicates",
                "least cosine of a copy to its original (random weights)",
                measured["copies_all"]["min"],
                note=f"most similar unrelated picture: up to {measured['unrelated_nearest']['max']} "
                f"(median {measured['unrelated_nearest']['p50']}); {measured['originals']} pictures",
            )
        )

    for size in sizes:
        t = _get(results, "sizes", str(size), "throughput")
        if not t:
            continue
        out.append(
            _figure(
                "5 throughput",
                f"errors at concurrency {t['concurrency']}, {t['main']['seconds']:.0f} s, {size:,}",
                t["errors"],
                "==",
                0,
            )
        )
        alternatives = ", ".join(
            f"{a['workers']}x{a['threads']}: {a['requests_per_s']}/s" for a in t.get("alternatives", [])
        )
        out.append(
            _figure(
                "5 throughput",
                f"requests/s, {t['main']['workers']} workers x {t['main']['threads']} threads",
                t["requests_per_s"],
                unit="/s",
                note=f"{t['ratio']} of {t['ideal_requests_per_s']}/s (cores / (encode + search))"
                + (f"; {alternatives}" if alternatives else ""),
            )
        )
    out.extend(_issue22_figures(results, sizes))
    return out


def _issue22_figures(results: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    from . import emphasis_report, search_features

    out = []
    for size in sizes:
        found = _get(results, "sizes", str(size), "search_features")
        out.extend(search_features.figures(found, _figure) if found else [])
    found = results.get("emphasis_recall")
    out.extend(emphasis_report.figures(found, _figure) if found else [])
    return out


def table(results: dict[str, Any]) -> str:
    rows = [("target", "figure", "value", "goal", "met", "note")]
    for f in results["figures"]:
        met = {True: "MET", False: "NOT MET", None: "-"}[f["met"]]
        value = f"{f['value']}{(' ' + f['unit']) if f['unit'] else ''}"
        rows.append((f["target"], f["name"], value, f["goal"], met, f["note"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    lines.insert(1, "-" * min(160, sum(widths) + 12))
    meta = results.get("meta", {})
    noise = []
    for size, section in results.get("sizes", {}).items():
        q = section.get("query", {}).get("noise")
        if q:
            noise.append(f"{int(size):,}: {q['other_cpu']:.0%}")
    ingest_noise = results.get("ingest", {}).get("noise")
    head = (
        f"benchmarks ({meta.get('mode')}, commit {meta.get('commit')}, {meta.get('cores')} cores, "
        f"{meta.get('total_s')} s)\nCPU taken by other processes meanwhile: "
        + ", ".join(([f"ingest: {ingest_noise['other_cpu']:.0%}"] if ingest_noise else []) + noise)
    )
    return head + "\n\n" + "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(s) for s in results.get("sizes", {}) if results["sizes"][s].get("query"))
    if not sizes:
        return
    q = [results["sizes"][str(s)]["query"] for s in sizes]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    series = [
        ("request p99", [x["request"]["p99_ms"] for x in q], "C3", "--"),
        ("request p50", [x["request"]["p50_ms"] for x in q], "C3", "-"),
        ("text encode p50", [x["encode"]["p50_ms"] for x in q], "C0", "-"),
        ("index search p50 (product)", [x["product_search"]["p50_ms"] for x in q], "C2", "-"),
        ("faiss flat p50 (in memory)", [x["faiss"]["p50_ms"] for x in q], "C2", ":"),
        ("numpy vectors @ q p50 (in memory)", [x["numpy"]["p50_ms"] for x in q], "C7", ":"),
        ("repeated query p50 (cached vector)", [x["repeat"]["p50_ms"] for x in q], "C1", "-."),
    ]
    for label, values, color, style in series:
        ax.plot(sizes, values, style, color=color, marker="o", label=label)
    for size in sizes:
        a = results["sizes"][str(size)].get("ann_ivf")
        if a:
            ax.plot(
                [size],
                [a["approximate"]["p50_ms"]],
                "s",
                color="C4",
                label=f"ivf search p50 (nprobe {a['nprobe_or_ef'].get('nprobe')})",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("library size (images)")
    ax.set_ylabel("milliseconds")
    meta = results.get("meta", {})
    ax.set_title(
        f"Text search latency against library size ({meta.get('cores')} cores, {meta.get('mode')} run)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    """The figures as a Markdown table (for BENCHMARKS.md)."""
    lines = ["| target | figure | value | goal | met | note |", "|---|---|---:|---|---|---|"]
    for f in results["figures"]:
        met = {True: "**met**", False: "**not met**", None: ""}[f["met"]]
        value = f"{f['value']}{(' ' + f['unit']) if f['unit'] else ''}"
        goal = "" if f["goal"] == "report" else f"`{f['goal']}`"
        lines.append(f"| {f['target']} | {f['name']} | {value} | {goal} | {met} | {f['note']} |")
    return "\n".join(lines)
