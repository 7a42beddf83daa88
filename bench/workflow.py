#!/usr/bin/env python3
"""The workflow engine under load, through the API of a running server:

  events    N records created in batches of 500 on a form whose workflow takes three steps
            (set a field, create a task, notify the owner): events per second from the
            first create to the last run done;
  latency   M records created one at a time by 4 clients at --rate per second in all (below
            what the engine keeps up with, so this is latency, not queueing): commit-to-done
            p50/p99, from each record's created_at to its run's finished_at (server clocks);
  timers    T records whose workflow fires 60 s after creation (all due within the same
            minute): the time from the last one due until all have fired, and the rate.

    python3 bench/workflow.py --port 8088 --n 20000 --m 1000 --timers 100000

Trellis must be running (bench/workflow.sh starts it, on SQLite and PostgreSQL, with one
and two processes).
"""

import argparse
import datetime as dt
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.environ.get("TRELLIS_BENCH_HARNESS", "target/bench/harness"))
import workload as w  # noqa: E402  (the shared harness, copied)


def ms(ts):
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def form(name):
    return {"name": name, "label": {"en": name}, "fields": [
        {"name": "name", "type": "text", "label": {"en": "Name"}},
        {"name": "status", "type": "select", "label": {"en": "Status"}, "default": "new",
         "options": [{"value": "new", "label": {"en": "New"}}, {"value": "done", "label": {"en": "Done"}}]},
    ]}


def count(http, name, flt):
    q = json.dumps(flt)
    _, body = http.req("GET", f"/api/v1/data/{name}?limit=1&count=true&filter={urllib.parse.quote(q)}")
    return body["total"]


def create_batches(http, name, n, prefix):
    for start in range(0, n, 500):
        recs = [{"name": f"{prefix} {i}"} for i in range(start, min(n, start + 500))]
        http.req("POST", f"/api/v1/data/{name}/batch", {"records": recs})


def wait_for(what, fn, target, limit=1800):
    t = time.time()
    while True:
        got = fn()
        if got >= target:
            return time.time()
        if time.time() - t > limit:
            raise RuntimeError(f"{what}: {got} of {target} after {limit} s")
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--timers", type=int, default=100000)
    ap.add_argument("--delay", type=int, default=60)
    ap.add_argument("--rate", type=float, default=200, help="creates per second in the latency phase")
    ap.add_argument("--skip", default="", help="comma-separated phases to skip")
    ap.add_argument("--out")
    opts = ap.parse_args()
    skip = set(opts.skip.split(","))
    _, login = w.Http(opts.port).req("POST", "/api/v1/auth/login", {
        "email": os.environ["TRELLIS_ADMIN_EMAIL"], "password": os.environ["TRELLIS_ADMIN_PASSWORD"]})
    token = login["token"]
    http = w.Http(opts.port, token)
    out = {}

    if "events" not in skip or "latency" not in skip:
        http.req("POST", "/api/v1/forms", form("wf_item"))
        http.req("POST", "/api/v1/workflows", {
            "name": "wf_three", "label": {"en": "Three steps"}, "form": "wf_item",
            "trigger": {"on": "created"},
            "steps": [
                {"type": "set", "values": {"status": "done"}},
                {"type": "task", "title": "Handle {{ record.name }}", "assignee": "owner"},
                {"type": "notify", "to": "owner", "message": "{{ record.name }} is done"},
            ]})
    if "events" not in skip:
        t0 = time.time()
        create_batches(http, "wf_item", opts.n, "e")
        created = time.time()
        done = wait_for("events", lambda: count(http, "wf_item", {"status": "done", "name": {"$startswith": "e "}}), opts.n)
        out["events"] = {"n": opts.n, "create_s": round(created - t0, 2), "total_s": round(done - t0, 2),
                         "events_per_s": round(opts.n / (done - t0))}
        print(f"events: {opts.n} records in {created - t0:.1f} s, all three steps done after "
              f"{done - t0:.1f} s: {opts.n / (done - t0):,.0f} events/s", flush=True)

    if "latency" not in skip:
        ids, lock = [], threading.Lock()

        start = time.time()

        def client(k):
            c = w.Http(opts.port, token)
            for i in range(k, opts.m, 4):
                wait = start + i / opts.rate - time.time()
                if wait > 0:
                    time.sleep(wait)
                _, r = c.req("POST", "/api/v1/data/wf_item", {"name": f"l {i}"})
                with lock:
                    ids.append((r["id"], r["created_at"]))

        t0 = time.time()
        ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        rate = opts.m / (time.time() - t0)
        wait_for("latency", lambda: count(http, "wf_item", {"status": "done", "name": {"$startswith": "l "}}), opts.m)
        time.sleep(0.5)
        lat = []
        for rid, created in ids:
            _, runs = http.req("GET", f"/api/v1/workflows/wf_three/runs?record={rid}")
            run = runs["data"][0]
            lat.append(ms(run["finished_at"]) - ms(created))
        out["latency"] = {"m": opts.m, "create_rate": round(rate), "p50_ms": round(pct(lat, 0.5), 1),
                          "p99_ms": round(pct(lat, 0.99), 1), "max_ms": round(max(lat), 1)}
        print(f"latency: {opts.m} single creates at {rate:,.0f}/s, commit to done p50 "
              f"{pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms", flush=True)

    if "timers" not in skip:
        http.req("POST", "/api/v1/forms", form("wf_timer"))
        http.req("POST", "/api/v1/workflows", {
            "name": "wf_timer_flow", "label": {"en": "Timer"}, "form": "wf_timer",
            "trigger": {"on": "after", "delay": f"{opts.delay}s"},
            "steps": [{"type": "notify", "to": "owner", "message": "{{ record.name }} is due"}]})
        _, before = http.req("GET", "/api/v1/notifications?unread=true&limit=1")
        base = before["unread"]
        t0 = time.time()
        create_batches(http, "wf_timer", opts.timers, "t")
        created = time.time()
        first_due, last_due = t0 + opts.delay, created + opts.delay
        if created - t0 > opts.delay:
            print(f"warning: creating took {created - t0:.0f} s, longer than the delay", flush=True)

        def fired():
            _, n = http.req("GET", "/api/v1/notifications?unread=true&limit=1")
            return n["unread"] - base

        time.sleep(max(0, first_due - time.time() - 1))
        done = wait_for("timers", fired, opts.timers)
        out["timers"] = {"t": opts.timers, "create_s": round(created - t0, 1),
                         "due_span_s": round(last_due - first_due, 1),
                         "after_last_due_s": round(done - last_due, 1),
                         "fired_per_s": round(opts.timers / (done - first_due))}
        print(f"timers: {opts.timers} due within {last_due - first_due:.1f} s; all fired "
              f"{done - last_due:.1f} s after the last was due ({opts.timers / (done - first_due):,.0f}/s "
              f"from the first due)", flush=True)

    if opts.out:
        with open(opts.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
