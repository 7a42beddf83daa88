#!/usr/bin/env python3
"""Row-level scopes stay in SQL: the shared workload's filtered list (region = east AND
score >= 60, sort -score, limit 50) over N leads, run as an administrator and as a sales
rep whose role reads only their own leads. Reuses the shared workload's records, lead
form and wrk driver; Trellis must be running (bench/run.sh starts it).

    python3 bench/scope.py --harness target/bench/harness --n 100000 --owners 10

--owners K spreads the leads round-robin over K reps (the rep measured owns N/K);
--owners 1 gives the rep every lead, so both runs return the same rows and only the
scope's own cost shows.
"""

import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", required=True, help="a copy of ../shared/bench")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--owners", type=int, default=10)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2, help="admin, rep, admin, rep, ...")
    ap.add_argument("--out", help="write the results as JSON here")
    opts = ap.parse_args()
    sys.path.insert(0, opts.harness)
    import workload as w  # noqa: E402  (the shared harness, copied)

    wopts = argparse.Namespace(n=opts.n, duration=opts.duration, warmup=opts.warmup,
                               concurrency=opts.concurrency)
    ad = w.Trellis(wopts)
    admin = ad.login()
    http = w.Http(ad.port, admin)
    ad.setup(http)
    http.req("DELETE", "/api/v1/roles/bench_rep", ok=(204, 404, 409))
    http.req("PUT", "/api/v1/roles/bench_rep", {
        "name": "bench_rep", "label": {"en": "Bench rep"},
        "forms": {"lead": {"create": "own", "read": "own", "update": "own"}}})
    reps = []
    for i in range(opts.owners):
        email = f"rep{i}@bench.example"
        st, body = http.req("POST", "/api/v1/users", {
            "email": email, "password": "bench-pass-12345", "roles": ["bench_rep"]}, ok=(201, 409))
        if st == 409:
            _, users = http.req("GET", "/api/v1/users")
            body = next(u for u in users["data"] if u["email"] == email)
        reps.append(body["id"])
    _, login = w.Http(ad.port).req("POST", "/api/v1/auth/login",
                                   {"email": "rep0@bench.example", "password": "bench-pass-12345"})
    rep_token = login["token"]

    records = w.gen_records(opts.n)
    for i, r in enumerate(records):
        r["owner"] = reps[i % len(reps)]
    for start in range(0, len(records), 500):
        http.req("POST", "/api/v1/data/lead/batch", {"records": records[start:start + 500]})

    path = ad.list_path()
    # Both see the same shape of answer; the rep's rows are all their own.
    _, a = http.req("GET", path)
    _, r = w.Http(ad.port, rep_token).req("GET", path)
    assert len(a["data"]) == 50 and r["data"], "both lists answer rows"
    assert all(x["owner"] == reps[0] for x in r["data"]), "the rep sees only their leads"
    pid = ad.pid()
    runs = {"admin": [], "rep": []}
    for _ in range(opts.rounds):
        for who, token in (("admin", admin), ("rep", rep_token)):
            res = w.run_wrk(ad, token, "list", path, opts.duration, opts.concurrency,
                            opts.warmup, pid=pid)
            if res["errors"]:
                raise SystemExit(f"{who}: {res['errors']} errors")
            runs[who].append(res)
            print(f"{who:5}  {res['throughput']:8.1f} req/s  p50 {res['p50_ms']} ms  "
                  f"p99 {res['p99_ms']} ms  cpu {res.get('server_cpu_ms_per_req')} ms/req", flush=True)
    best = {k: max(v, key=lambda x: x["throughput"]) for k, v in runs.items()}
    ratio = best["admin"]["throughput"] / best["rep"]["throughput"]
    print(f"\nN={opts.n}, rep owns {opts.n // opts.owners} leads ({opts.owners} owners)")
    print(f"admin {best['admin']['throughput']:.1f} req/s, rep {best['rep']['throughput']:.1f} req/s: "
          f"admin/rep = {ratio:.2f} (target <= 1.2)")
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump({"n": opts.n, "owners": opts.owners, "runs": runs, "ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
