#!/usr/bin/env bash
# Offline checks of the Terraform in infra/ (no terraform binary, no provider download, no Azure):
#   1. syntax + formatting: HashiCorp's HCL parser and hclwrite formatter, compiled to WASM
#      (npm @cdktn/hcl2json, @cdktn/hcl-tools): every .tf / .tfvars / .hcl must parse and be
#      exactly what `terraform fmt` would write;
#   2. provider schema: every azurerm resource type, argument and block against the schema in the
#      PyPI package cdktn-provider-azurerm (18.9.0 = azurerm 5.10.0, must pass; 17.0.0 = azurerm
#      4.81.0, checked too so the 4.x compatibility stays known);
#   3. checkov 3.3.30: zero failed checks, and every `checkov:skip` carries a written reason;
#   4. consistency between the code and the infrastructure (infra/checks/consistency_check.py):
#      Functions and routes, app settings, lake containers, Event Grid targets and schemas, Event
#      Hub names, resource provider registration, tfvars values against variable validations.
#
# What it installs (all from package registries, into ./.tools/infra, reused on later runs):
#   .tools/infra/node     npm ci of infra/checks/package-lock.json (~4 MB)
#   .tools/infra/venv     python-hcl2, pytest (infra/checks/requirements.txt)
#   .tools/infra/checkov  checkov in its own venv (it ships a conflicting `hcl2` module)
#   .tools/infra/schema   azurerm schemas extracted from the two cdktn wheels (wheels deleted after)
#
# usage: scripts/check_infra.sh [--install-only] [syntax|schema|checkov|consistency ...]
# Exit status: 0 when every selected check passes, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TOOLS="$ROOT/.tools/infra"
CHECKS="$ROOT/infra/checks"
PY="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in infra/checks
SCHEMAS=("18.9.0" "17.0.0")   # cdktn-provider-azurerm versions: azurerm 5.10.0 and 4.81.0

install_only=0
selected=()
for arg in "$@"; do
  case "$arg" in
    --install-only) install_only=1 ;;
    syntax|schema|checkov|consistency) selected+=("$arg") ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "check_infra.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#selected[@]} -gt 0 ]] || selected=(syntax schema checkov consistency)

say() { printf '%s\n' "$*" >&2; }
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# A venv is (re)built when its requirements file changed since the last install.
ensure_venv() { # dir requirements
  local dir="$1" req="$2" stamp
  stamp="$(stamp_of "$req")"
  if [[ -x "$dir/bin/python" && "$(cat "$dir/.stamp" 2>/dev/null)" == "$stamp" ]]; then return; fi
  say "installing $(basename "$dir") venv from $(basename "$req") ..."
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$stamp" >"$dir/.stamp"
}

ensure_node() {
  local dir="$TOOLS/node" stamp
  stamp="$(stamp_of "$CHECKS/package.json" "$CHECKS/package-lock.json")"
  if [[ -d "$dir/node_modules/@cdktn/hcl-tools" && "$(cat "$dir/.stamp" 2>/dev/null)" == "$stamp" ]]; then return; fi
  say "installing @cdktn/hcl2json and @cdktn/hcl-tools (npm ci) ..."
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$CHECKS/package.json" "$CHECKS/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
  echo "$stamp" >"$dir/.stamp"
}

ensure_schemas() {
  local v out wheels
  mkdir -p "$TOOLS/schema"
  for v in "${SCHEMAS[@]}"; do
    out="$TOOLS/schema/cdktn-provider-azurerm-$v.json"
    if [[ -s "$out" && "$out" -nt "$CHECKS/extract_schema.py" ]]; then continue; fi
    say "downloading cdktn-provider-azurerm==$v (the provider schema, ~45 MB) ..."
    wheels="$(mktemp -d)"
    "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$wheels" "cdktn-provider-azurerm==$v"
    "$TOOLS/venv/bin/python" "$CHECKS/extract_schema.py" "$wheels"/*.whl "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$wheels"
  done
}

mkdir -p "$TOOLS"
ensure_venv "$TOOLS/venv" "$CHECKS/requirements.txt"
for c in "${selected[@]}"; do
  case "$c" in
    syntax) ensure_node ;;
    schema) ensure_schemas ;;
    checkov) ensure_venv "$TOOLS/checkov" "$CHECKS/requirements-checkov.txt" ;;
  esac
done
if [[ $install_only == 1 ]]; then
  ensure_node; ensure_schemas; ensure_venv "$TOOLS/checkov" "$CHECKS/requirements-checkov.txt"
  say "infra check tools installed in $TOOLS"
  exit 0
fi

rc=0
run() { # name command...
  local name="$1"; shift
  printf '\n== infra check: %s\n' "$name"
  if "$@"; then printf 'PASS %s\n' "$name"; else printf 'FAIL %s\n' "$name"; rc=1; fi
}
for c in "${selected[@]}"; do
  case "$c" in
    syntax)
      run "syntax and fmt (HashiCorp HCL parser + hclwrite)" \
        node "$CHECKS/hcl_check.mjs" --modules "$TOOLS/node/node_modules" "$ROOT/infra" ;;
    schema)
      for v in "${SCHEMAS[@]}"; do
        run "provider schema (cdktn-provider-azurerm $v)" \
          "$TOOLS/venv/bin/python" "$CHECKS/schema_check.py" "$TOOLS/schema/cdktn-provider-azurerm-$v.json" "$ROOT/infra"
      done ;;
    checkov)
      run "checkov" "$TOOLS/venv/bin/python" "$CHECKS/checkov_check.py" --checkov "$TOOLS/checkov/bin/checkov" "$ROOT/infra" ;;
    consistency)
      run "code <-> infrastructure consistency" \
        "$TOOLS/venv/bin/python" "$CHECKS/consistency_check.py" --repo "$ROOT" ;;
  esac
done
echo
if [[ $rc == 0 ]]; then echo "infra checks: all passed"; else echo "infra checks: FAILED (see FAIL lines above)"; fi
exit $rc
