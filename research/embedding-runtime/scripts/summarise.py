# Summarise results.jsonl into a markdown table (one row per run label).
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl") if l.strip()]
print("| run | ref op/s | load | b1 | b8 | b16 | b32 chunks/s | best tok/s | short p50 / p90 ms | CPU% b8 (sys) | OS threads | peak RSS MB | max cos dev | busy |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    x = r["result"]; t = {d["batch"]: d for d in x["throughput"]}
    cps = lambda b: f'{t[b]["chunks_per_s"]:.1f}' if b in t else "-"
    best = max(d["tokens_per_s"] for d in x["throughput"])
    b8 = t.get(8, x["throughput"][0])
    print(f'| {r["label"]} | {r["refop_per_s"]} | {r["load_before"]} | {cps(1)} | {cps(8)} | {cps(16)} | {cps(32)} | {best:.0f} | '
          f'{x["short_p50_ms"]:.2f} / {x["short_p90_ms"]:.2f} | {b8["cpu_pct"]:.0f} ({b8["sys_pct"]:.0f}) | {x["os_threads"]} | '
          f'{int(x["peak_rss"].split()[0])/1024:.0f} | {x["max_cos_dev"]:.1e} | {r["busy"].strip()} |')
