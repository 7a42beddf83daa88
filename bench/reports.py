#!/usr/bin/env python3
"""The report engine against hand-written SQL on the same database.

Two forms, `customer` (name, region, industry) and `order` (customer -> customer, amount,
ordered_at, status new -> paid -> shipped, or cancelled), N orders over C customers, each
order with its history in the audit log. Three reports, each run through the API
(POST /api/v1/reports/{name}/run) and as the query a competent person would write by hand,
on the same database file or PostgreSQL database:

  revenue_by_month_region  sum(amount) and count by month of ordered_at and customer.region,
                           cancelled orders left out
  order_funnel             orders that reached new, paid, shipped (from the audit history)
  customer_rfm             customers per RFM segment (scores 1-5 = ceil(5 * cume_dist))

Median of --runs timed runs after one warm-up each; the API's result is checked against
the hand SQL's (a warning when they differ). Target: API within 1.3x of the hand SQL.

Loading: --load sql (default) writes the rows straight into the record tables and the
audit log, exactly as the server writes them (ids UUIDv7, the server's datetime text on
SQLite, create/update audit entries), then ANALYZEs; --load api goes through the batch
endpoint and one PATCH per status change (slow: for checking the SQL loader, and for its
rate). Trellis must be running (bench/reports.sh starts it, on SQLite and PostgreSQL):

    python3 bench/reports.py --harness target/bench/harness --port 8088 \\
        --db /tmp/trellis-peer/trellis.db --orders 1000000 --customers 100000
    python3 bench/reports.py ... --db postgres://postgres@127.0.0.1:5432/trellis_reports_bench

--skip-load reuses the forms and rows already there (re-running the timings).
"""

import argparse
import bisect
import datetime as dt
import json
import math
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

REGIONS = ["north", "east", "south", "west", "central", "overseas"]
INDUSTRIES = ["software", "manufacturing", "retail", "finance", "healthcare", "education",
              "logistics", "energy"]
STATUSES = ["new", "paid", "shipped", "cancelled"]
STAGES = ["new", "paid", "shipped"]
# An order's history, by cumulative share: still new; cancelled unpaid; paid; paid then
# cancelled; paid then shipped. Reached: new 100%, paid 85%, shipped 70%.
PATHS = [(0.05, ("new",)), (0.15, ("new", "cancelled")), (0.25, ("new", "paid")),
         (0.30, ("new", "paid", "cancelled")), (1.00, ("new", "paid", "shipped"))]
T0 = dt.datetime(2024, 11, 1, tzinfo=dt.timezone.utc).timestamp()   # orders over two years
SPAN = 730 * 86400
SEGMENTS = ["high_value", "loyal", "potential", "at_risk", "hibernating", "others"]

_ADJ = ["Blue", "Green", "Rapid", "Bright", "Silver", "North", "Prime", "Clear", "Solid",
        "Smart", "Global", "Urban", "Quantum", "Golden", "Iron", "Open"]
_NOUN = ["River", "Peak", "Harbor", "Forge", "Works", "Labs", "Systems", "Logic", "Field",
         "Bridge", "Stone", "Cloud", "Signal", "Circuit", "Garden", "Engine"]


# ----------------------------------------------------------------------------- the data
def fmt_us(us):
    """The server's datetime text (value.rs format_datetime): fixed-width UTC, microseconds."""
    s, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:06d}Z"


def uuid7(ms, rng):
    v = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def gen_customers(n, seed=42):
    """[(created_us, {name, region, industry})], deterministic."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        created = int((T0 - rng.random() * 365 * 86400) * 1e6)
        out.append((created, {"name": f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {i}",
                              "region": rng.choice(REGIONS), "industry": rng.choice(INDUSTRIES)}))
    return out


def gen_orders(n, n_customers, seed=43):
    """Yields (customer index, amount, ordered_us, [(status, at_us), ...]), deterministic.
    Customers order at lognormal rates, so frequency and monetary spread (a few have none)."""
    rng = random.Random(seed)
    cum, total = [], 0.0
    for _ in range(n_customers):
        total += rng.lognormvariate(0, 1)
        cum.append(total)
    for _ in range(n):
        c = min(n_customers - 1, bisect.bisect(cum, rng.random() * total))
        amount = round(rng.lognormvariate(4.5, 0.8), 2)
        at = int((T0 + rng.random() * SPAN) * 1e6)
        x = rng.random()
        path = next(p for share, p in PATHS if x < share)
        hist, t = [], at
        for k, st in enumerate(path):
            if k:
                t += int(rng.uniform(3600, 4 * 86400) * 1e6)
            hist.append((st, t))
        yield c, amount, at, hist


def dumps(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- API side
def form_defs():
    opt = lambda vals: [{"value": v, "label": {"en": v}} for v in vals]
    return [
        {"name": "customer", "label": {"en": "Customer"}, "fields": [
            {"name": "name", "type": "text", "label": {"en": "Name"}},
            {"name": "region", "type": "select", "label": {"en": "Region"}, "options": opt(REGIONS)},
            {"name": "industry", "type": "select", "label": {"en": "Industry"}, "options": opt(INDUSTRIES)},
        ]},
        {"name": "order", "label": {"en": "Order"}, "fields": [
            {"name": "customer", "type": "relation", "target": "customer", "label": {"en": "Customer"}},
            {"name": "amount", "type": "currency", "label": {"en": "Amount"}},
            {"name": "ordered_at", "type": "datetime", "label": {"en": "Ordered at"}},
            {"name": "status", "type": "select", "label": {"en": "Status"}, "options": opt(STATUSES)},
        ]},
    ]


REPORTS = [
    {"name": "revenue_by_month_region", "label": {"en": "Revenue by month and region"}, "form": "order",
     "dimensions": [{"field": "ordered_at", "bucket": "month"}, {"field": "customer.region"}],
     "measures": [{"fn": "sum", "field": "amount", "as": "revenue"}, {"fn": "count"}],
     "filter": {"status": {"$ne": "cancelled"}}},
    {"name": "order_funnel", "label": {"en": "Order funnel"}, "kind": "funnel", "form": "order",
     "funnel": {"field": "status", "stages": STAGES}},
    {"name": "customer_rfm", "label": {"en": "Customer RFM"}, "kind": "rfm", "form": "customer",
     "rfm": {"orders": "order", "link": "customer", "date": "ordered_at", "amount": "amount",
             "filter": {"status": {"$ne": "cancelled"}}}},
]


def columns_of(http, form):
    """field -> SQL column of a form's record table (from the form's column list)."""
    st, body = http.req("GET", f"/api/v1/forms/{form}/columns", ok=None)
    if st == 200:
        rows = body.get("columns", []) if isinstance(body, dict) else body
        cols = {c["field"]: c["column"] for c in rows if c.get("state", "active") == "active"}
        if cols:
            return cols
    # A new form's columns are named after its fields (forms.rs initial_columns).
    return {f["name"]: f["name"] for f in next(d for d in form_defs() if d["name"] == form)["fields"]}


def load_api(http, w, port, token, opts):
    """Through the API: batches of 1000 creates, then one PATCH per status change (4 clients)."""
    t0 = time.time()
    cids = []
    custs = gen_customers(opts.customers)
    for s in range(0, len(custs), 1000):
        _, b = http.req("POST", "/api/v1/data/customer/batch", {"records": [v for _, v in custs[s:s + 1000]]})
        cids.extend(r["id"] for r in b["data"])
    t1 = time.time()
    orders = list(gen_orders(opts.orders, opts.customers))
    oids = []
    for s in range(0, len(orders), 1000):
        recs = [{"customer": cids[c], "amount": a, "ordered_at": fmt_us(at), "status": "new"}
                for c, a, at, _ in orders[s:s + 1000]]
        _, b = http.req("POST", "/api/v1/data/order/batch", {"records": recs})
        oids.extend(r["id"] for r in b["data"])
    t2 = time.time()
    todo = [(oids[i], h[k][0]) for k in (1, 2) for i, (_, _, _, h) in enumerate(orders) if len(h) > k]
    lock, it = threading.Lock(), iter(todo)

    def client():
        c = w.Http(port, token)
        while True:
            with lock:
                nxt = next(it, None)
            if nxt is None:
                return
            c.req("PATCH", f"/api/v1/data/order/{nxt[0]}", {"status": nxt[1]})

    ts = [threading.Thread(target=client) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    t3 = time.time()
    out = {"customers_s": round(t1 - t0, 1), "orders_s": round(t2 - t1, 1), "updates": len(todo),
           "updates_s": round(t3 - t2, 1), "total_s": round(t3 - t0, 1)}
    print(f"load (api): {opts.customers:,} customers in {t1 - t0:.1f} s, {opts.orders:,} orders in "
          f"{t2 - t1:.1f} s ({opts.orders / max(t2 - t1, 1e-9):,.0f}/s), {len(todo):,} status changes "
          f"in {t3 - t2:.1f} s ({len(todo) / max(t3 - t2, 1e-9):,.0f}/s)", flush=True)
    return out


# ----------------------------------------------------------------------------- SQL side
class Sqlite:
    name = "sqlite"

    def __init__(self, path):
        self.path = path

    def connect(self, ro=True):
        c = sqlite3.connect(f"file:{self.path}?mode=ro" if ro else self.path, uri=ro, timeout=60,
                            isolation_level=None)
        # As the server's readers (db.rs): private cache 4 MB, default temp store.
        c.execute("PRAGMA cache_size=-4000")
        return c

    def time_query(self, sql, runs):
        c = self.connect()
        try:
            c.execute(sql).fetchall()   # warm-up
            times, rows = [], None
            for _ in range(runs):
                t = time.perf_counter()
                rows = c.execute(sql).fetchall()
                times.append((time.perf_counter() - t) * 1000)
            return times, [tuple(r) for r in rows]
        finally:
            c.close()


class Postgres:
    name = "postgres"

    def __init__(self, url):
        self.url = url

    def psql(self, *args, stdin=None, text=True):
        return subprocess.run(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args],
                              input=stdin, capture_output=True, text=text, check=True)

    def time_query(self, sql, runs):
        """One psql session: \\timing, a warm-up then `runs` runs; the client-side time of
        each (sent to last row received), the rows of the last run."""
        script = "\\timing on\n" + (sql.rstrip().rstrip(";") + ";\n") * (runs + 1)
        out = self.psql("-A", "-t", "-F", "\t", stdin=script).stdout
        times, block, rows = [], [], []
        for line in out.splitlines():
            m = re.match(r"^Time: ([\d.]+) ms", line)
            if m:
                times.append(float(m.group(1)))
                rows, block = block, []
            elif line:
                block.append(tuple(_num(x) for x in line.split("\t")))
        return times[1:], rows


def _num(s):
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def stage_case(expr):
    return "CASE " + expr + " " + " ".join(f"WHEN '{s}' THEN {i + 1}" for i, s in enumerate(STAGES)) + " END"


def hand_sql(db, oc, cc):
    """The hand-written queries. oc/cc: field -> column of order/customer."""
    q = lambda c: '"' + c + '"'
    o_cust, o_amt, o_at, o_st = q(oc["customer"]), q(oc["amount"]), q(oc["ordered_at"]), q(oc["status"])
    c_reg = q(cc["region"])
    pg = db.name == "postgres"
    month = f"to_char(o.{o_at} AT TIME ZONE 'UTC', 'YYYY-MM')" if pg else f"strftime('%Y-%m', o.{o_at})"
    not_cancelled = f"(o.{o_st} <> 'cancelled' OR o.{o_st} IS NULL)"
    grouped = f"""
SELECT {month} AS month, c.{c_reg} AS region, SUM(o.{o_amt}) AS revenue, COUNT(*) AS count
FROM rec_order o LEFT JOIN rec_customer c ON c.id = o.{o_cust}
WHERE {not_cancelled}
GROUP BY 1, 2 ORDER BY 1, 2"""
    # Per order, the highest stage it ever had: its create entry holds {"status": s}, an
    # update that changed it {"status": {"before": .., "after": s}} (keyed by field name),
    # and its current status.
    if pg:
        hist = ("CASE a.action WHEN 'create' THEN a.changes::jsonb->>'status' "
                "ELSE a.changes::jsonb->'status'->>'after' END")
    else:
        hist = ("CASE a.action WHEN 'create' THEN json_extract(a.changes, '$.status') "
                "ELSE json_extract(a.changes, '$.status.after') END")
    reached = ", ".join(f"COUNT(*) FILTER (WHERE k >= {i + 1}) AS {s}" if pg else f"SUM(k >= {i + 1}) AS {s}"
                        for i, s in enumerate(STAGES))
    cur = f"COALESCE({stage_case('o.' + o_st)}, 0)"
    if pg:
        # Each order joined to its history, then grouped (the planner hashes both sides in
        # parallel; the history aggregated first and then joined is 3x slower here).
        funnel = f"""
SELECT {reached}
FROM (SELECT GREATEST(COALESCE(MAX({stage_case(hist)}), 0), {cur}) AS k
      FROM rec_order o
      LEFT JOIN trellis_audit a ON a.form = 'order' AND a.record_id = o.id AND a.action IN ('create', 'update')
      GROUP BY o.id, o.{o_st}) t"""
    else:
        # The history aggregated per order first, then joined (faster on SQLite than
        # joining first, which fetches the audit rows order by order).
        funnel = f"""
WITH h AS (
  SELECT a.record_id, MAX({stage_case(hist)}) AS k
  FROM trellis_audit a WHERE a.form = 'order' AND a.action IN ('create', 'update')
  GROUP BY a.record_id
)
SELECT {reached}
FROM (SELECT MAX(COALESCE(h.k, 0), {cur}) AS k
      FROM rec_order o LEFT JOIN h ON h.record_id = o.id) t"""
    days = ("EXTRACT(EPOCH FROM (now() - last)) / 86400.0" if pg
            else "julianday('now') - julianday(last)")
    # First match wins (report.rs Rfm::segments, the defaults).
    seg = " ".join(f"WHEN {cond} THEN '{name}'" for name, cond in [
        ("high_value", "r >= 4 AND f >= 4 AND m >= 4"), ("loyal", "r >= 3 AND f >= 4"),
        ("potential", "r >= 4 AND f <= 3"), ("at_risk", "r <= 2 AND f >= 3"),
        ("hibernating", "r <= 2 AND f <= 2")])
    # ceil(5 * cume_dist()): the 5 in 5 ceilings; SQLite has no ceil() unless built with
    # its math functions (the server's bundled SQLite is not).
    ceil = ((lambda x: f"CAST(ceil({x}) AS INTEGER)") if pg else
            (lambda x: f"(CAST({x} AS INTEGER) + ({x} > CAST({x} AS INTEGER)))"))
    rfm = f"""
WITH per AS (
  SELECT o.{o_cust} AS customer, MAX(o.{o_at}) AS last, COUNT(*) AS n, SUM(o.{o_amt}) AS total
  FROM rec_order o JOIN rec_customer c ON c.id = o.{o_cust}
  WHERE {not_cancelled}
  GROUP BY o.{o_cust}
), dist AS (
  SELECT last, n, total,
         5 * cume_dist() OVER (ORDER BY last) AS xr,
         5 * cume_dist() OVER (ORDER BY n) AS xf,
         5 * cume_dist() OVER (ORDER BY total) AS xm
  FROM per
), scored AS (
  SELECT last, n, total, {ceil('xr')} AS r, {ceil('xf')} AS f, {ceil('xm')} AS m FROM dist
)
SELECT CASE {seg} ELSE 'others' END AS segment, COUNT(*) AS customers,
       AVG({days}) AS recency_days, AVG(n) AS frequency, AVG(total) AS monetary
FROM scored GROUP BY 1 ORDER BY 1"""
    return {"revenue_by_month_region": grouped, "order_funnel": funnel, "customer_rfm": rfm}


# ----------------------------------------------------------------------------- direct load
ORDER_SYS = ["id", "version", "created_at", "updated_at", "created_by", "owner"]


def rows_customers(opts, uid, rng, cc):
    """(record rows, audit rows, ids)."""
    recs, audits, ids = [], [], []
    for created, v in gen_customers(opts.customers):
        rid = uuid7(created // 1000, rng)
        at = fmt_us(created)
        ids.append(rid)
        recs.append((rid, 1, at, at, uid, uid, v["name"], v["region"], v["industry"]))
        ch = dict(v)
        ch["owner"] = uid
        audits.append(("customer", rid, 1, "create", uid, at, dumps(ch)))
    return recs, audits, ids


def order_chunks(opts, uid, rng, cids, chunk=50000):
    """Per chunk: (record rows, audit rows) in the order the server writes them: every
    create of the chunk, then its first status changes, then its second ones."""
    recs, creates, ups = [], [], ([], [])
    for c, amount, at, hist in gen_orders(opts.orders, opts.customers):
        rid = uuid7(at // 1000, rng)
        t_at = fmt_us(at)
        last_st, last_t = hist[-1]
        recs.append((rid, len(hist), t_at, fmt_us(last_t), uid, uid, cids[c], amount, t_at, last_st))
        creates.append(("order", rid, 1, "create", uid, t_at,
                        dumps({"customer": cids[c], "amount": amount, "ordered_at": t_at,
                               "status": hist[0][0], "owner": uid})))
        for k in (1, 2):
            if len(hist) > k:
                ups[k - 1].append(("order", rid, k + 1, "update", uid, fmt_us(hist[k][1]),
                                   dumps({"status": {"before": hist[k - 1][0], "after": hist[k][0]}})))
        if len(recs) == chunk:
            yield recs, creates + ups[0] + ups[1]
            recs, creates, ups = [], [], ([], [])
    if recs:
        yield recs, creates + ups[0] + ups[1]


AUDIT_COLS = ["form", "record_id", "version", "action", "actor", "at", "changes"]


def load_sql(db, opts, uid, oc, cc):
    rng = random.Random(44)
    ccols = ORDER_SYS + [cc["name"], cc["region"], cc["industry"]]
    ocols = ORDER_SYS + [oc["customer"], oc["amount"], oc["ordered_at"], oc["status"]]
    q = lambda cols: ", ".join('"' + c + '"' for c in cols)
    t0 = time.time()
    crecs, caudit, cids = rows_customers(opts, uid, rng, cc)
    n_audit = len(caudit)
    if db.name == "sqlite":
        c = db.connect(ro=False)
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA cache_size=-262144")   # the loader only: indexes built in memory
        c.execute("BEGIN IMMEDIATE")
        ins = lambda t, cols, rows: c.executemany(
            f"INSERT INTO {t} ({q(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        ins("rec_customer", ccols, crecs)
        ins("trellis_audit", AUDIT_COLS, caudit)
        for recs, audit in order_chunks(opts, uid, rng, cids):
            ins("rec_order", ocols, recs)
            ins("trellis_audit", AUDIT_COLS, audit)
            n_audit += len(audit)
        c.execute("COMMIT")
        t1 = time.time()
        c.execute("ANALYZE")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
    else:
        p = subprocess.Popen(["psql", db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                             stdin=subprocess.PIPE, text=True)

        def copy(t, cols, rows):
            p.stdin.write(f"COPY {t} ({q(cols)}) FROM STDIN;\n")
            p.stdin.writelines("\t".join("\\N" if v is None else str(v) for v in r) + "\n" for r in rows)
            p.stdin.write("\\.\n")

        p.stdin.write("BEGIN;\n")
        copy("rec_customer", ccols, crecs)
        copy("trellis_audit", AUDIT_COLS, caudit)
        for recs, audit in order_chunks(opts, uid, rng, cids):
            copy("rec_order", ocols, recs)
            copy("trellis_audit", AUDIT_COLS, audit)
            n_audit += len(audit)
        p.stdin.write("COMMIT;\n")
        p.stdin.close()
        if p.wait():
            raise SystemExit("loading PostgreSQL failed")
        t1 = time.time()
        # What autovacuum would do shortly after a bulk load (the server's own ANALYZE
        # after a load through the API, stats.rs); the visibility map for index-only scans.
        db.psql("-c", "VACUUM ANALYZE rec_customer", "-c", "VACUUM ANALYZE rec_order",
                "-c", "VACUUM ANALYZE trellis_audit")
    t2 = time.time()
    print(f"load (sql): {opts.customers:,} customers, {opts.orders:,} orders, {n_audit:,} audit rows "
          f"in {t1 - t0:.1f} s, then ANALYZE {t2 - t1:.1f} s", flush=True)
    return {"rows_s": round(t1 - t0, 1), "analyze_s": round(t2 - t1, 1), "audit_rows": n_audit}


# ----------------------------------------------------------------------------- checks
def col_names(body):
    return [c.get("name") if isinstance(c, dict) else str(c) for c in body.get("columns", [])]


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def close(a, b):
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=0.01)


def check(name, body, hand):
    """Compare the API's rows with the hand SQL's; returns a list of differences."""
    rows, cols = body.get("rows", []), col_names(body)
    diffs = []
    if name == "revenue_by_month_region":
        want = {(m, r): (rev, n) for m, r, rev, n in hand}
        got = {}
        ri = cols.index("revenue") if "revenue" in cols else 2
        ni = cols.index("count") if "count" in cols else 3
        for row in rows:
            got[(str(row[0])[:7] if row[0] is not None else None, row[1])] = (row[ri], row[ni])
        for k in sorted(set(want) | set(got), key=str):
            a, b = want.get(k), got.get(k)
            if a is None or b is None or not close(a[0], b[0]) or int(a[1]) != int(b[1]):
                diffs.append(f"{k}: hand {a}, api {b}")
        tw = (sum(v[0] for v in want.values()), sum(v[1] for v in want.values()))
        tg = (sum(float(v[0] or 0) for v in got.values()), sum(int(v[1] or 0) for v in got.values()))
        if not close(tw[0], tg[0]) or tw[1] != tg[1]:
            diffs.insert(0, f"totals: hand revenue {tw[0]:,.2f} count {tw[1]:,}, api {tg[0]:,.2f} {tg[1]:,}")
    elif name == "order_funnel":
        want = dict(zip(STAGES, hand[0]))
        got = {}
        ci = next((cols.index(n) for n in ("count", "records", "reached", "total") if n in cols), None)
        for row in rows:
            stage = next((v for v in row if v in STAGES), None)
            ints = [v for v in row if is_int(v)]
            # The count column by name, else the row's largest whole number.
            got[stage] = row[ci] if ci is not None else (max(ints) if ints else None)
        for s in STAGES:
            if want.get(s) is None or got.get(s) is None or int(want[s]) != int(got[s]):
                diffs.append(f"{s}: hand {want.get(s)}, api {got.get(s)}")
    elif name == "customer_rfm":
        want = {r[0]: r[1] for r in hand}
        got = {}
        ci = next((cols.index(n) for n in ("customers", "count") if n in cols), None)
        for row in rows:
            seg = next((v for v in row if v in SEGMENTS), None)
            got[seg] = row[ci] if ci is not None else next((v for v in row if is_int(v)), None)
        for s in SEGMENTS:
            if int(want.get(s) or 0) != int(got.get(s) or 0):
                diffs.append(f"{s}: hand {want.get(s, 0)}, api {got.get(s, 0)}")
    return diffs


# ----------------------------------------------------------------------------- main
def print_table(outs):
    """One markdown table from result dicts (one per database)."""
    print("| database | report | API ms | hand SQL ms | API / hand (target <= 1.3) |")
    print("|---|---|---|---|---|")
    for o in outs:
        label = f"{o['db']} {o.get('sqlite_version', '')}".strip()
        for name, r in o["reports"].items():
            api = (f"{r['api_ms']:,.1f}" if "api_ms" in r
                   else f"error {r['api_error']}" if "api_error" in r else "no engine")
            ratio = (f"{r['ratio']:.2f}" + (" (results differ)" if r.get("differences") else "")
                     if "ratio" in r else "")
            print(f"| {label} | {name} | {api} | {r['hand_ms']:,.1f} | {ratio} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", nargs="*", help="print one table from result JSON files and exit")
    ap.add_argument("--harness", default=os.environ.get("TRELLIS_BENCH_HARNESS", "target/bench/harness"),
                    help="a copy of ../shared/bench (its HTTP client)")
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("--db", help="the SQLite file, or a postgres:// URL")
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query, after one warm-up")
    ap.add_argument("--load", choices=["sql", "api"], default="sql")
    ap.add_argument("--skip-load", action="store_true", help="forms and rows are there already")
    ap.add_argument("--only", default="", help="comma-separated report names")
    ap.add_argument("--sqlite-version", help="warn unless the hand SQL runs on this SQLite (the server's)")
    ap.add_argument("--out", help="write the results as JSON here")
    opts = ap.parse_args()
    if opts.table is not None:
        outs = []
        for p in opts.table:
            with open(p) as f:
                outs.append(json.load(f))
        print_table(outs)
        return
    if not opts.db:
        ap.error("--db is required")
    sys.path.insert(0, opts.harness)
    import workload as w  # noqa: E402  (the shared harness, copied)

    db = Postgres(opts.db) if opts.db.startswith("postgres") else Sqlite(opts.db)
    _, login = w.Http(opts.port).req("POST", "/api/v1/auth/login", {
        "email": os.environ["TRELLIS_ADMIN_EMAIL"], "password": os.environ["TRELLIS_ADMIN_PASSWORD"]})
    token = login["token"]
    http = w.Http(opts.port, token)
    _, me = http.req("GET", "/api/v1/me")
    uid = me.get("id") or me.get("user", {}).get("id")
    out = {"db": db.name, "orders": opts.orders, "customers": opts.customers, "runs": opts.runs}
    if db.name == "sqlite":
        out["sqlite_version"] = sqlite3.sqlite_version
        print(f"hand SQL on SQLite {sqlite3.sqlite_version}", flush=True)
        if opts.sqlite_version and opts.sqlite_version != sqlite3.sqlite_version:
            print(f"warning: the server's SQLite is {opts.sqlite_version}; the hand SQL's timings are "
                  "not comparable (bench/reports.sh builds the same one)", flush=True)

    if not opts.skip_load:
        for f in form_defs():
            http.req("POST", "/api/v1/forms", f)
    oc, cc = columns_of(http, "order"), columns_of(http, "customer")
    if not opts.skip_load:
        out["load"] = (load_api(http, w, opts.port, token, opts) if opts.load == "api"
                       else load_sql(db, opts, uid, oc, cc))
        out["load"]["mode"] = opts.load

    # The server sees the rows: the count, one order and its history.
    _, page = http.req("GET", "/api/v1/data/order?limit=1&count=true")
    if page.get("total") != opts.orders:
        print(f"warning: the API counts {page.get('total')} orders, not {opts.orders}", flush=True)
    one = page["data"][0]
    _, hist = http.req("GET", f"/api/v1/data/order/{one['id']}/history")
    if not (hist.get("data") if isinstance(hist, dict) else hist):
        print(f"warning: no history for order {one['id']}", flush=True)

    # The reports, through the API if the engine is there.
    engine = True
    for r in REPORTS:
        http.req("DELETE", f"/api/v1/reports/{r['name']}", ok=None)
        st, body = http.req("POST", "/api/v1/reports", r, ok=None)
        if st in (404, 405):
            engine = False
            print(f"note: POST /api/v1/reports answers {st}: no report engine in this build; "
                  "timing the hand SQL only", flush=True)
            break
        if st not in (200, 201):
            raise SystemExit(f"creating report {r['name']}: {st} {json.dumps(body)[:800]}")

    sqls = hand_sql(db, oc, cc)
    only = set(filter(None, opts.only.split(",")))
    results = {}
    for name, sql in sqls.items():
        if only and name not in only:
            continue
        times, hand = db.time_query(sql, opts.runs)
        res = {"hand_ms": round(statistics.median(times), 1), "hand_runs_ms": [round(t, 1) for t in times]}
        print(f"{name}: hand SQL median {res['hand_ms']:,.1f} ms  (runs {res['hand_runs_ms']})", flush=True)
        if name == "order_funnel":
            print(f"   reached: {dict(zip(STAGES, hand[0]))}", flush=True)
        elif name == "customer_rfm":
            print(f"   segments: {{{', '.join(f'{r[0]}: {r[1]}' for r in hand)}}}", flush=True)
        else:
            print(f"   {len(hand)} groups, revenue {sum(r[2] for r in hand):,.2f}, "
                  f"count {sum(r[3] for r in hand):,}", flush=True)
        if engine:
            path = f"/api/v1/reports/{name}/run"
            st, body = http.req("POST", path, {}, ok=None)
            if st != 200:
                print(f"   API: POST {path} -> {st}: {json.dumps(body)[:500]}", flush=True)
                res["api_error"] = st
            else:
                api_times = []
                for _ in range(opts.runs):
                    t = time.perf_counter()
                    http.req("POST", path, {})
                    api_times.append((time.perf_counter() - t) * 1000)
                res["api_ms"] = round(statistics.median(api_times), 1)
                res["api_runs_ms"] = [round(t, 1) for t in api_times]
                res["ratio"] = round(res["api_ms"] / res["hand_ms"], 2)
                diffs = check(name, body, hand)
                res["differences"] = diffs
                print(f"   API median {res['api_ms']:,.1f} ms (runs {res['api_runs_ms']}): "
                      f"{res['ratio']:.2f}x the hand SQL", flush=True)
                if diffs:
                    print(f"   WARNING: the API's result differs from the hand SQL's ({len(diffs)}):", flush=True)
                    for d in diffs[:10]:
                        print(f"     {d}", flush=True)
                    print(f"     API columns {col_names(body)}, first rows {body.get('rows', [])[:3]}", flush=True)
        results[name] = res
    out["reports"] = results

    print(f"\n{db.name}, {opts.orders:,} orders, {opts.customers:,} customers, median of {opts.runs} runs:")
    print_table([out])
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
