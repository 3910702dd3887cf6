"""The soak's and the fault suite's view of the server's database and process:
row counts, audit rows by request id, size, connections, RSS and fds."""

import glob
import os
import re
import sqlite3
import subprocess
import urllib.request

PG_URL = os.environ.get("SOAK_PG_URL", "")  # postgres://user@host:port/db when on Postgres
SQLITE = os.environ.get("E2E_DB", "")


def psql_bin():
    d = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    return d[-1] if d else "psql"


def query(sql):
    """Rows of `sql` as lists of strings."""
    if PG_URL:
        out = subprocess.run([psql_bin(), PG_URL, "-At", "-F", "\t", "-c", sql], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        return [line.split("\t") for line in out.splitlines() if line]
    con = sqlite3.connect(f"file:{SQLITE}?mode=ro", uri=True, timeout=30)
    try:
        return [[str(c) for c in row] for row in con.execute(sql).fetchall()]
    finally:
        con.close()


def scalar(sql):
    rows = query(sql)
    return int(rows[0][0]) if rows and rows[0] and rows[0][0] not in ("", "None") else 0


TABLES = ["audit_events", "access_tokens", "refresh_tokens", "token_families", "authorization_codes",
          "auth_requests", "sessions", "consents", "clients"]


def counts():
    return {t: scalar(f"SELECT count(*) FROM {t}") for t in TABLES}


def token_audit():
    """{request_id: event_type} of token_issued / token_refreshed rows."""
    rows = query("SELECT request_id, event_type FROM audit_events "
                 "WHERE event_type IN ('token_issued', 'token_refreshed') AND outcome = 'success'")
    return {r[0]: r[1] for r in rows}


def jtis():
    return {r[0] for r in query("SELECT jti FROM access_tokens")}


def refresh_hashes():
    return {r[0] for r in query("SELECT token_sha256 FROM refresh_tokens")}


def size_bytes():
    if PG_URL:
        return scalar("SELECT pg_database_size(current_database())")
    return sum(os.path.getsize(p) for p in glob.glob(SQLITE + "*") if os.path.isfile(p))


def connections():
    """Server connections to the database: Postgres backends of this
    database (other than ours), or SQLite file descriptors of the server."""
    if PG_URL:
        return scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()")
    return None


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_sqlite_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(SQLITE):
                n += 1
        except OSError:
            pass
    return n


def metrics(admin_url):
    """{'name{labels}': value} from the admin listener's /metrics."""
    text = urllib.request.urlopen(admin_url + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) ([0-9.eE+-]+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def issued_metric(m):
    return {g: int(m.get(f'authserver_tokens_issued_total{{grant_type="{g}"}}', 0))
            for g in ("client_credentials", "authorization_code", "refresh_token")}
