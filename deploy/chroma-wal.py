#!/usr/bin/env python3
"""Puts ChromaDB's SQLite database in WAL mode, so that ChromaDB answers
robeing's recalls while it writes (docs/operations.md, "ChromaDB's SQLite in
WAL mode").

Usage: python3 deploy/chroma-wal.py <ChromaDB persist directory>

Before ChromaDB's first start it creates <dir>/chroma.sqlite3 in WAL mode
(ChromaDB then builds its tables in it); an existing database is switched,
which needs ChromaDB stopped. SQLite records the mode in the file, so it is
done once; running it again changes nothing. Prints the journal mode and
exits 0 only if it is WAL. Needs only Python's standard library.
"""
import os
import sqlite3
import sys

if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
    sys.exit(__doc__)
directory = sys.argv[1]
os.makedirs(directory, exist_ok=True)
path = os.path.join(directory, "chroma.sqlite3")
try:
    db = sqlite3.connect(path, timeout=10)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        db.close()
except sqlite3.Error as e:
    sys.exit(f"{path}: {e} (is ChromaDB running? stop it first)")
print(f"{path}: journal_mode={mode}")
sys.exit(0 if mode == "wal" else 1)
