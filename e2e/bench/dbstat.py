"""Row counts of the authserver's tables (and rows marked spent), as JSON, to
count the database writes an operation costs: run before and after a load
and divide the difference by the operations that succeeded.

    dbstat.py SQLITE_FILE          (SQLite)
    dbstat.py postgres://…/DB      (PostgreSQL, through Debian's psql)
"""
import glob
import json
import sqlite3
import subprocess
import sys

target = sys.argv[1]
SPENT = {
    "refresh_tokens.rotated (update)": "select count(*) from refresh_tokens where rotated_at is not null",
    "authorization_codes.consumed (update)": "select count(*) from authorization_codes where consumed_at is not null",
}

if target.startswith("postgres"):
    psql = (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql")) or ["psql"])[-1]

    def q(sql):
        return subprocess.run([psql, target, "-Atc", sql], check=True, capture_output=True, text=True, timeout=60).stdout.split()

    tables = [t for t in q("select tablename from pg_tables where schemaname = current_schema()") if t != "seaql_migrations"]
    counts = q("select " + ", ".join([f'(select count(*) from "{t}")' for t in tables] + [f"({sql})" for sql in SPENT.values()]))
    vals = [int(x) for x in counts[0].split("|")]
    out = dict(zip(tables + list(SPENT), vals))
else:
    db = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    tables = [r[0] for r in db.execute("select name from sqlite_master where type='table' and name not like 'sqlite_%' and name != 'seaql_migrations'")]
    out = {t: db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
    for k, sql in SPENT.items():
        out[k] = db.execute(sql).fetchone()[0]
print(json.dumps(out))
