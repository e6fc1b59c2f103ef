# Shared by bin/run and bin/test: a .venv with a Python >= 3.11 and the project installed.
# Re-installs only when pyproject.toml changed since the last install.
venv_ready() {
  local extras="$1"
  local python=""
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ]; then
    echo "Keepers needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2
    exit 1
  fi
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  local stamp=".venv/.installed${extras:+-$extras}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "Installing Keepers${extras:+ with [$extras]} into .venv …" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" >&2
    touch "$stamp"
  fi
}
