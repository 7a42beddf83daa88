#!/usr/bin/env python3
"""What the CRM's lead rules add to a single create through the API: p50/p99 latency of
POST /api/v1/data/lead, one client, keep-alive, on the demo CRM, with
  none     every lead rule inactive,
  score    lead_score, lead_grade and lead_contact (scripts over the record only),
  route    the same plus lead_route (team lookups, workload counts, a turn taken, in the
           create's transaction),
in interleaved rounds so drift hits every configuration alike. --preload K first adds K
leads owned by the north reps, as a CRM holds them after a while: --open (default 20 %)
of them still open, the rest converted or lost; the workload counts read the open ones.

    python3 bench/route.py --port 8088 --n 2000 --preload 100000

Trellis must be running with --demo (bench/route.sh starts it).
"""

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.environ.get("TRELLIS_BENCH_HARNESS", "target/bench/harness"))
import workload as w  # noqa: E402  (the shared harness, copied)

RULES = ["lead_score", "lead_grade", "lead_contact", "lead_route"]
CONFIGS = {"none": set(), "score": set(RULES[:3]), "route": set(RULES)}
REGIONS = ["north", "east", "south", "central", "west"]
INDUSTRIES = ["manufacturing", "it", "finance", "retail", "logistics"]
SOURCES = ["website", "consult", "expo", "referral", "ads", "social", "search"]


def lead(rng, i):
    return {"company": f"Bench Lead {i} Ltd", "contact_name": "Li Na",
            "phone": f"139{rng.randrange(10**7, 10**8)}", "source": rng.choice(SOURCES),
            "industry": rng.choice(INDUSTRIES), "region": rng.choice(REGIONS),
            "employees": rng.randrange(5, 5000), "title": rng.choice(["CEO", "采购经理", "engineer"]),
            "downloaded_pricing": rng.random() < 0.3, "page_visits": rng.randrange(0, 12)}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("--n", type=int, default=2000, help="creates per configuration")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--preload", type=int, default=0)
    ap.add_argument("--open", type=float, default=0.2, help="share of preloaded leads still open")
    ap.add_argument("--out")
    opts = ap.parse_args()
    _, login = w.Http(opts.port).req("POST", "/api/v1/auth/login", {
        "email": os.environ["TRELLIS_ADMIN_EMAIL"], "password": os.environ["TRELLIS_ADMIN_PASSWORD"]})
    http = w.Http(opts.port, login["token"])
    defs = {r: http.req("GET", f"/api/v1/rules/{r}")[1] for r in RULES}
    _, users = http.req("GET", "/api/v1/users")
    north = [u["id"] for u in users["data"] if u["email"].split("@")[0] in ("wanglei", "liuyang")]
    rng = random.Random(7)

    def use(active):
        for name, d in defs.items():
            d = dict(d, active=name in active)
            d.pop("bundle", None)
            d.pop("position", None)
            http.req("PUT", f"/api/v1/rules/{name}", d)

    if opts.preload:
        use(set())
        t = time.time()
        for start in range(0, opts.preload, 500):
            batch = []
            for i in range(start, min(opts.preload, start + 500)):
                r = dict(lead(rng, i), owner=north[i % len(north)])
                x = rng.random()
                if x >= opts.open:
                    r["status"] = "converted" if x < opts.open + (1 - opts.open) / 2 else "lost"
                    r["lost_reason"] = "budget" if r["status"] == "lost" else None
                else:
                    r["status"] = rng.choice(["new", "contacted", "qualified"])
                batch.append(r)
            http.req("POST", "/api/v1/data/lead/batch", {"records": batch})
        print(f"preloaded {opts.preload} leads ({opts.open:.0%} open) in {time.time() - t:.1f} s")
    lat = {c: [] for c in CONFIGS}
    per_round = max(1, opts.n // opts.rounds)
    i = 0
    for _ in range(opts.rounds):
        for name, active in CONFIGS.items():
            use(active)
            for _ in range(20):  # warm-up after the rule change
                http.req("POST", "/api/v1/data/lead", lead(rng, i))
                i += 1
            for _ in range(per_round):
                body = lead(rng, i)
                i += 1
                t = time.perf_counter()
                http.req("POST", "/api/v1/data/lead", body)
                lat[name].append((time.perf_counter() - t) * 1000)
    use(set(RULES))
    out = {}
    print(f"{'rules':<7} {'creates':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, xs in lat.items():
        out[name] = {"n": len(xs), "p50_ms": round(pct(xs, 0.50), 3), "p99_ms": round(pct(xs, 0.99), 3)}
        print(f"{name:<7} {len(xs):>8} {out[name]['p50_ms']:>8.2f} {out[name]['p99_ms']:>8.2f}")
    for name in ("score", "route"):
        print(f"added by {name}: p50 {out[name]['p50_ms'] - out['none']['p50_ms']:+.2f} ms, "
              f"p99 {out[name]['p99_ms'] - out['none']['p99_ms']:+.2f} ms")
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump({"preload": opts.preload, "open": opts.open, "results": out}, f, indent=2)


if __name__ == "__main__":
    main()
