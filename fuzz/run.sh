#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of this crate for a bounded time,
# then prints one line per target: executions, seconds, executions per
# second, final coverage (libFuzzer's cov: and ft:), corpus entries, crashes.
#
#   fuzz/run.sh [seconds-per-target]      (default 60)
#
# Needs a nightly toolchain (`cargo +nightly`); installs cargo-fuzz if it is
# missing. Seeds under fuzz/seeds/<target>/ are copied into the corpus
# (fuzz/corpus/<target>/, not committed); dictionaries under
# fuzz/dicts/<target>.dict are passed to libFuzzer. A crash leaves its input
# under fuzz/artifacts/<target>/ and makes the script exit with status 1;
# reproduce it with `cargo +nightly fuzz run -a <target> <file>` and shrink
# it with `cargo +nightly fuzz tmin -a <target> <file>`.
#
# Not run by CI: it is a bounded local search, run by hand.

set -euo pipefail

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs == 0)); then
    echo "usage: $0 [seconds-per-target]" >&2
    exit 2
fi
cd "$(dirname "$0")"

targets=(duration_rate config_toml config_env rule_pattern client_identity)
declare -A max_len=(
    [duration_rate]=256
    [config_toml]=4096
    [config_env]=2048
    [rule_pattern]=1024
    [client_identity]=4096
)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz…" >&2
    cargo install cargo-fuzz
fi

# -a: debug assertions (and overflow checks) on, as in tests.
echo "building ${#targets[@]} targets…" >&2
cargo +nightly fuzz build -a

logs=target/fuzz-logs
mkdir -p "$logs"
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    if [[ -d seeds/$t ]]; then
        cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    fi
    args=(-max_total_time="$secs" -max_len="${max_len[$t]}" -print_final_stats=1)
    if [[ -f dicts/$t.dict ]]; then
        args+=(-dict="dicts/$t.dict")
    fi
    before=$(find "artifacts/$t" -type f | wc -l)
    echo "fuzzing $t for ${secs}s…" >&2
    rc=0
    cargo +nightly fuzz run -a "$t" -- "${args[@]}" >"$logs/$t.log" 2>&1 || rc=$?
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if ((rc != 0 && crashes == 0)); then
        crashes=1 # failed without leaving an artifact (e.g. a build error)
    fi
    ((crashes == 0)) || failed=1

    # libFuzzer's last words: "Done N runs in S second(s)" and
    # "#N  DONE   cov: C ft: F corp: K/…" (on a crash, the last "#N" status
    # line), and with -print_final_stats the stat:: lines, also on a crash.
    log=$logs/$t.log
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [[ -n $execs ]] || execs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    took=$(grep -oE 'runs in [0-9]+ second' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    if [[ -z $took && -n $execs && -n $rate ]] && ((rate > 0)); then
        took=$((execs / rate))
    fi
    status=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$status" | grep -oE '[0-9]+' || true)
    ft=$(grep -oE 'ft: [0-9]+' <<<"$status" | grep -oE '[0-9]+' || true)
    corpus=$(find "corpus/$t" -type f | wc -l)
    summary+=("$(printf '%-16s %12s %6s %9s %6s %7s %8s %8s' \
        "$t" "${execs:--}" "${took:--}" "${rate:--}" "${cov:--}" "${ft:--}" "$corpus" "$crashes")")
    if ((crashes > 0)); then
        summary+=("    see $logs/$t.log and artifacts/$t/")
    fi
done

printf '\n%-16s %12s %6s %9s %6s %7s %8s %8s\n' \
    target execs secs exec/s cov ft corpus crashes
printf '%s\n' "${summary[@]}"
exit "$failed"
