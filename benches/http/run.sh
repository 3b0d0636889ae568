#!/usr/bin/env bash
# HTTP benchmark: the same handler bare and under #[optimize_route(level =
# Advanced)], loaded by wrk on loopback, alternating routes for several
# rounds; prints requests/s of each round and the ratio of the medians.
#
#   bash benches/http/run.sh [rounds] [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-4}
secs=${2:-10}
conns=${3:-64}
addr=127.0.0.1:8099
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null; }
cargo build --release -p limiter-benches --bin http_bench -q
"${CARGO_TARGET_DIR:-target}/release/http_bench" "$addr" > /tmp/http_bench.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://$addr/bare/1" >/dev/null && break; sleep 0.1; done
curl -sf "http://$addr/advanced/7" >/dev/null
rps() { wrk -t1 -c"$conns" -d"${secs}s" "http://$addr/$1/42" | awk '/Requests\/sec/ {print $2}'; }
bare=(); adv=()
for r in $(seq "$rounds"); do
  b=$(rps bare); a=$(rps advanced)
  bare+=("$b"); adv+=("$a")
  echo "round $r: bare $b req/s, advanced $a req/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${bare[@]}"); ma=$(median "${adv[@]}")
echo "median: bare $mb req/s, advanced $ma req/s, ratio $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", a/b}') (wrk -t1 -c$conns -d${secs}s, $rounds rounds)"
