"""`make bench-turns`'s table and chart, from its results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.provenance import stamp_line


def table(results: dict[str, Any]) -> str:
    delays = ", ".join(f"{p} {d} ms" for p, d in results["provider_delays_ms"].items())
    lines = [
        f"{stamp_line(results)}; RTT {results['rtt_ms']:g} ms; provider delays {delays}",
        "",
        "| N | agent | utterance | reply p50 / p95 | split | talk-over | unanswered | LLM calls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, agent in results["agents"].items():
        for row in agent["rows"]:
            for kind, k in row["by_kind"].items():
                calls = "" if k["llm_calls"] is None else f"{k['llm_calls']}/{k['turns']}"
                lines.append(
                    f"| {row['n']} | {name} | {kind} | {k['p50_ms']} / {k['p95_ms']} ms | "
                    f"{k['split']}/{k['turns']} | {k['talk_over']}/{k['turns']} | "
                    f"{k['unanswered']} | "
                    f"{calls} |"
                )
    lines += [
        "",
        "| agent | N | greeted (p50 / p95 from joining) | LLM calls per utterance "
        "| CPU s per conversation-minute | USS / PSS per conversation "
        "| returning person's greeting | new person's "
        "| test microphones' gaps | test provider's transcript lag p95 | CPU the host took "
        "| machine busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, agent in results["agents"].items():
        returning = f"{agent['returning_greeting_ms']} ms"
        if "returning_greeting_from_page_ms" in agent:
            returning += f"; from the room page {agent['returning_greeting_from_page_ms']} ms"
        for row in agent["rows"]:
            lines.append(
                f"| {name} | {row['n']} | {row['greeted']}/{row['n']}{greeting_times(row)} | "
                f"{row['llm_calls_per_turn']} | "
                f"{row['cpu_s_per_conversation_minute']} | "
                f"{row['uss_mb_per_conversation']} / {row['pss_mb_per_conversation']} MB | "
                f"{returning} | {agent['new_person_greeting_ms']} ms | "
                f"{row.get('microphone_gaps', '')} | "
                f"{lag_ms(row.get('transcript_lag_p95_ms'))} | "
                f"{pct(row.get('host_stole_pct'))} | {pct(row.get('machine_busy_pct'))} |"
            )
    goals = results["goals"]
    lines += [
        "",
        f"Complete questions at N = 1, this / VAD-only: {goals['complete_p50_vs_vad_only']}; "
        f"this / livekit's defaults: {goals['complete_p50_vs_livekit']}. A returning person's "
        f"first audio, this / VAD-only: {goals['returning_greeting_vs_vad_only']} with the "
        f"agent sent by the token, {goals['returning_greeting_from_page_vs_vad_only']} from "
        "the room page."
        + (
            f" This agent's worst p95 at N = 8 / at N = 1: {goals['p95_at_most_people_vs_one']}."
            if "p95_at_most_people_vs_one" in goals
            else ""
        ),
    ]
    return "\n".join(lines)


def greeting_times(row: dict[str, Any]) -> str:
    if row.get("greeting_p50_ms") is None:  # a row measured before they were
        return ""
    return f" ({row['greeting_p50_ms']} / {row['greeting_p95_ms']} ms)"


def lag_ms(value: float | None) -> str:
    return "" if value is None else f"{value} ms"


def pct(value: float | None) -> str:
    return "" if value is None else f"{value} %"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the utterance kinds in the corpus's order, as every row lists them
    kinds = list(next(iter(results["agents"].values()))["rows"][0]["by_kind"])
    figure, axes = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(results["agents"])
    for index, (name, agent) in enumerate(results["agents"].items()):
        row = agent["rows"][0]
        values = [row["by_kind"][k]["p50_ms"] or 0 for k in kinds]
        spread = [
            (row["by_kind"][k]["p95_ms"] or 0) - v for k, v in zip(kinds, values, strict=True)
        ]
        xs = [i + index * width for i in range(len(kinds))]
        axes.bar(xs, values, width, yerr=[[0] * len(values), spread], label=name, capsize=3)
    axes.set_xticks([i + width for i in range(len(kinds))], kinds, fontsize=8)
    axes.set_ylabel("end of speech → reply, p50 (p95 above), ms")
    axes.legend(fontsize=8)
    figure.suptitle(f"turn-taking at N = 1 (commit {results['commit']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
