#!/usr/bin/env bash
# Create bench/.venv-dbos with DBOS installed (idempotent).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-dbos"
version="3.4.0"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import dbos" 2>/dev/null; then
    echo "DBOS venv present: $venv"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "dbos==$version"
echo "DBOS $version installed in $venv"
