#!/usr/bin/env bash
# Regenerates link/symbol-order.txt: the functions of the release `slipway`
# binary that run while it starts and idles with Discord and Matrix connected
# (the idle benchmark's four configurations, under valgrind's callgrind), in
# the order they first ran. build.rs hands the list to the linker, which
# places those functions together (see BENCHMARKS.md, "idle RSS").
#
#   bash benches/order-symbols.sh      # then: cargo bench --bench slipway
#
# Needs valgrind and what the idle benchmark needs (.venv with Synapse).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo bench --bench slipway --no-run
work=$(mktemp -d)
trap 'pkill -TERM -f "callgrind-out-file=$work" || true; rm -rf "$work"' EXIT
cp target/release/slipway "$work/slipway"
cat > "$work/wrap.sh" <<WRAP
#!/usr/bin/env bash
# Not exec: the benchmark kills this shell; callgrind keeps running until
# it is told to stop, and then writes its profile.
valgrind --tool=callgrind --demangle=no --dump-instr=no \
  --callgrind-out-file=$work/callgrind.out.%p "$work/slipway" "\$@" &
wait
WRAP
chmod +x "$work/wrap.sh"
# The figure this run prints measures the wrapper, not Slipway: ignore it.
SLIPWAY_BENCH_BIN="$work/wrap.sh" SLIPWAY_BENCH_ONLY=idle cargo bench --bench slipway \
  >"$work/bench.log" 2>&1 || true
pkill -TERM -f "callgrind-out-file=$work" || true
for _ in $(seq 60); do
  pgrep -f "callgrind-out-file=$work" >/dev/null || break
  sleep 1
done
nm --defined-only "$work/slipway" | awk '$2 == "t" || $2 == "T" { print $3 }' | sort -u >"$work/text.txt"
python3 - "$work" <<'PY'
import glob, re, sys
work = sys.argv[1]
text = set(open(work + '/text.txt').read().split())
seen, order = set(), []
pattern = re.compile(r'^c?fn=\(\d+\) (.+)$')
for path in sorted(glob.glob(work + '/callgrind.out.*')):
    for line in open(path, errors='replace'):
        m = pattern.match(line.rstrip('\n'))
        if m and m.group(1) in text and m.group(1) not in seen:
            seen.add(m.group(1))
            order.append(m.group(1))
if len(order) < 1000:
    sys.exit('only {} functions were recorded; see {}/bench.log'.format(len(order), work))
open('link/symbol-order.txt', 'w').write('\n'.join(order) + '\n')
print('link/symbol-order.txt: {} functions'.format(len(order)))
PY
