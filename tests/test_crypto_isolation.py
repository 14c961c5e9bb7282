"""The crypto core imports no web framework, database layer or HTTP client, and only one of
its modules touches cryptography.hazmat / nacl."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CRYPTO = Path(__file__).resolve().parent.parent / "crypto"
FORBIDDEN = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "sqlmodel",
    "httpx",
    "uvicorn",
    "asyncpg",
    "aiosqlite",
    "alembic",
)


def test_importing_every_crypto_module_loads_no_web_or_db_package() -> None:
    modules = [f"liaison.crypto.{p.stem}" for p in sorted(CRYPTO.glob("*.py")) if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted({{n.split('.')[0] for n in sys.modules}} & set({FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"crypto pulled in: {out.stdout.strip()}"
    assert len(modules) >= 10


def test_only_primitives_imports_hazmat_or_nacl() -> None:
    offenders = []
    for path in CRYPTO.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n.startswith(("cryptography", "nacl")) for n in names) and path.name != "_primitives.py":
                offenders.append(path.name)
    assert offenders == []
