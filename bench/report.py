"""The benchmark's table (each figure beside its limit) and chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .provenance import stamp_line


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    pvf = r["pooled_vs_fresh"]
    out.append(
        (
            "pooled_vs_fresh p50",
            f"{pvf['pooled_p50_ms']} ms vs {pvf['fresh_p50_ms']} ms (ratio {pvf['ratio']})",
            "ratio ≈ 0.33 (1 round trip vs 3)",
        )
    )
    wfr = r["warm_first_request"]
    out.append(
        (
            "warm_first_request",
            f"{wfr['warm_ms']} ms vs cold {wfr['cold_ms']} ms (ratio {wfr['ratio']})",
            "ratio ≈ 0.33",
        )
    )
    for p in r["parallel"]:
        protocol = "HTTP/2" if p.get("http2") else "HTTP/1.1"
        out.append(
            (
                f"parallel n={p['n']} ({p['call_ms']:.0f} ms calls, {protocol})",
                f"{p['parallel_ms']} ms vs {p['sequential_ms']} ms (speedup {p['speedup']}), "
                f"{p.get('connections', '?')} new TCP connection(s)",
                f"speedup {p['n']}",
            )
        )
    for layer, g in r["greeting_cache"].items():
        name = f"greeting_cache ({layer} shared layer)"
        out.append(
            (
                f"{name} miss",
                f"{g['miss_ms']} ms, {g['miss_llm_calls']} LLM call(s) at the server",
                "one LLM call + 1 round trip",
            )
        )
        out.append(
            (
                f"{name} hit p50",
                f"{g['hit_p50_us']} µs; {g['hit_llm_calls']} LLM calls for {g['hits']} hits",
                "no I/O, 0 calls",
            )
        )
        out.append(
            (
                f"{name} {g['concurrent_misses']} concurrent misses",
                f"{g['concurrent_llm_calls']} LLM call(s) at the server",
                "1",
            )
        )
        shared = "from the shared layer" if g["new_process_from_shared_layer"] else "NOT shared"
        out.append(
            (
                f"{name} in a new process (a fresh job)",
                f"{g['new_process_ms']} ms {shared}, {g['new_process_llm_calls']} LLM calls",
                "0 calls",
            )
        )
    for m in r["memory_batch"]:
        out.append(
            (
                f"memory_batch {m['backend']} n={m['n']}",
                f"{m['batched_ms']} ms vs {m['sequential_ms']} ms (speedup {m['speedup']})",
                f"speedup ≈ n (one round trip, one commit) = {m['n']}",
            )
        )
    o = r["pool_overhead"]
    out.append(("pool_overhead acquire p50", f"{o['acquire_p50_us']} µs", "≪ 1 round trip"))
    out.append(("pool_overhead stats() p50", f"{o['stats_p50_us']} µs", "≪ 1 round trip"))
    c = r["connection_reuse"]
    out.append(
        (
            f"connection_reuse ({c['requests']} requests)",
            f"{c['connections_opened']} connection(s)",
            "1",
        )
    )
    out.append(("pool_rss_mb", f"{r['pool_rss_mb']} MB", "small next to a job process"))
    v = r["voice_turn"]
    out.append(
        (
            f"voice_turn end of speech → first audio (RTT {v['rtt_ms']:g} ms)",
            f"{v['with_pool_ms']} ms with the pool, {v['without_pool_ms']} ms with fresh clients",
            "pool ≤ fresh",
        )
    )
    out.append(
        (
            "voice_turn, of which: the VAD's end-of-speech silence",
            f"{v['vad_silence_ms']} ms (the same VAD in both)",
            "by design",
        )
    )
    out.append(
        (
            "voice_turn, of which: the pipeline after it",
            f"{v['pipeline_with_pool_ms']} ms with the pool, "
            f"{v['pipeline_without_pool_ms']} ms with fresh clients",
            "pool ≤ fresh",
        )
    )
    return out


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{stamp_line(r)}; injected RTT {r['rtt_ms']} ms; run took {r.get('elapsed_s', '?')} s",
        "",
        "| figure | measured | limit |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(r)]
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    pvf, wfr = r["pooled_vs_fresh"], r["warm_first_request"]
    ax = axes[0]
    labels = ["fresh client", "pooled", "cold job", "warmed job"]
    values = [pvf["fresh_p50_ms"], pvf["pooled_p50_ms"], wfr["cold_ms"], wfr["warm_ms"]]
    ax.bar(labels, values, color=["#c44", "#4a4", "#c44", "#4a4"])
    ax.axhline(r["rtt_ms"], color="grey", linestyle="--", label=f"1 RTT = {r['rtt_ms']:.0f} ms")
    ax.set_ylabel("ms (p50)")
    ax.set_title("one request over TLS")
    ax.legend()

    ax = axes[1]
    ns = [str(p["n"]) for p in r["parallel"]]
    ax.bar(ns, [p["speedup"] for p in r["parallel"]], color="#48c", label="measured")
    ax.plot(ns, [p["n"] for p in r["parallel"]], "k_", markersize=30, label="limit (n)")
    ax.set_xlabel("parallel AI calls")
    ax.set_ylabel("speedup over sequential")
    ax.set_title("parallel_ai_calls")
    ax.legend()

    ax = axes[2]
    backends = [m["backend"] for m in r["memory_batch"]]
    ax.bar(backends, [m["speedup"] for m in r["memory_batch"]], color="#a6c")
    ax.set_ylabel("speedup of one batch over 100 saves")
    ax.set_title("memory_batch")
    fig.suptitle(f"{r['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
