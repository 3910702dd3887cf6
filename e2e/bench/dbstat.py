"""Row counts of the authserver's SQLite tables (and rows marked spent), as
JSON, to count the database writes a grant costs: run before and after a
load and divide the difference by the requests that succeeded."""
import json
import sqlite3
import sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
tables = [r[0] for r in db.execute("select name from sqlite_master where type='table' and name not like 'sqlite_%' and name != 'seaql_migrations'")]
out = {t: db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
# Updates that a row count cannot see.
out["refresh_tokens.rotated (update)"] = db.execute("select count(*) from refresh_tokens where rotated_at is not null").fetchone()[0]
out["authorization_codes.consumed (update)"] = db.execute("select count(*) from authorization_codes where consumed_at is not null").fetchone()[0]
print(json.dumps(out))
