#!/usr/bin/env bash
# Try Slipway without a Proxmox cluster: starts fakepve (a fake Proxmox VE API,
# installed into .venv by tests/setup.sh) on 127.0.0.1, writes a configuration
# for it, and opens `slipway console` as the given user (default bob).
#
#   bash examples/try-console.sh            # as bob (team web, member)
#   bash examples/try-console.sh alice      # as alice (team web, admin)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USER_NAME="${1:-bob}"
PY="$(bash "$REPO/tests/setup.sh" | tail -n 1)"
WORK="${SLIPWAY_TRY_DIR:-$REPO/target/try}"
mkdir -p "$WORK/traefik" "$WORK/file_sd"
# Tasks take a little real time so progress is visible.
"$PY" "$REPO/tests/fakepve_driver.py" --dir "$WORK" --time-scale 0.2 --ignore-stdin > "$WORK/fakepve.json" &
FAKEPVE=$!
trap 'kill $FAKEPVE 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$WORK/fakepve.json" ] && break; sleep 0.1; done
eval "$("$PY" - "$WORK/fakepve.json" <<'PY'
import json, shlex, sys
d = json.load(open(sys.argv[1]))
for k in ("url", "ca", "token_id", "token_secret"):
    print(f"FP_{k.upper()}={shlex.quote(d[k])}")
PY
)"
printf '%s' "$FP_TOKEN_SECRET" > "$WORK/pve-token"
sed -e "s|^url = .*|url = \"$FP_URL\"|" \
    -e "s|^token_id = .*|token_id = \"$FP_TOKEN_ID\"|" \
    -e "s|^token_secret_env = .*|token_secret_file = \"$WORK/pve-token\"|" \
    -e "s|^ca_file = .*|ca_file = \"$FP_CA\"|" \
    -e "s|^database = .*|database = \"$WORK/slipway.db\"|" \
    -e "s|^commands_dir = .*|commands_dir = \"$REPO/commands\"|" \
    -e "s|^profiles_dir = .*|profiles_dir = \"$REPO/profiles\"|" \
    -e "s|^address_wait = .*|address_wait = \"2s\"|" \
    -e "s|^enabled = true|enabled = false|" \
    -e "s|^listen = .*|listen = \"127.0.0.1:0\"|" \
    -e "s|^dir = \"/etc/traefik/dynamic\"|dir = \"$WORK/traefik\"|" \
    -e "s|^file_sd_dir = .*|file_sd_dir = \"$WORK/file_sd\"|" \
    "$REPO/examples/slipway.toml" > "$WORK/slipway.toml"
echo "fakepve is at $FP_URL; configuration: $WORK/slipway.toml" >&2
echo "Try: /help, /profiles, /env create profile:web-app name:shop, /env list, /quota" >&2
cd "$REPO"
cargo run --quiet -- console --config "$WORK/slipway.toml" --as "$USER_NAME"
