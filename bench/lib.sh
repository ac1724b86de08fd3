# Sourced by the bench scripts once they have set ROOT: their log line, the build of what they
# measure (so that the profile the benchmarks use is the shipped one, chosen here alone), the
# generated inputs they share (gen_once, ndjson_file: WORK, BIN and TIMEOUT set) and the wait
# for an idle machine (wait_quiet: QUIET_WAIT set).

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The build directory .ci/run uses too (outside the clone), so that clones share their builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agentmeter/target}"
# Where `--profile dist` (Cargo.toml: the shipped build, whole-program LTO) puts its output.
DIST="$CARGO_TARGET_DIR/dist"

# dist_build CARGO_ARGS...: `cargo build --profile dist` of the repository, logged.
dist_build() {
  log "building: cargo build --profile dist $*"
  (cd "$ROOT" && cargo build --profile dist --quiet "$@")
}

# Sets BIN to the agentmeter binary measured: $AGENTMETER_BIN, else the dist build, made now.
agentmeter_bin() {
  if [[ -n ${AGENTMETER_BIN:-} ]]; then
    BIN=$AGENTMETER_BIN
  else
    dist_build -p agentmeter
    BIN="$DIST/agentmeter"
  fi
}

# gen_once DIR ARGS...: `agentmeter gen --out DIR ARGS...` unless DIR holds that run already.
gen_once() {
  local dir=$1
  shift
  local params="gen $*"
  if [[ -f $dir/.bench-params && $(cat "$dir/.bench-params") == "$params" ]]; then
    log "reusing $dir ($params)"
    return 1
  fi
  log "generating $dir ($params)"
  rm -rf "$dir"
  timeout "$TIMEOUT" "$BIN" gen --out "$dir" "$@" >&2
  echo "$params" >"$dir/.bench-params"
  return 0
}

# ndjson_file EVENTS TENANTS: generates (once) and prints the path of one NDJSON file of EVENTS
# distinct usage events, the month's days in order, as bench/run and bench/memory measure it.
ndjson_file() {
  local dir="$WORK/ndjson-$1-t$2"
  local file="$dir/events.ndjson"
  [[ -f $file ]] || rm -f "$dir/.bench-params"
  gen_once "$dir" --events "$1" --tenants "$2" --ndjson-only --span-permille 0 || true
  if [[ ! -f $file ]]; then
    # One file: the days in order (the day files are removed to save the space).
    cat "$dir"/input/ndjson/usage-*.ndjson >"$file.tmp"
    mv "$file.tmp" "$file"
    rm -rf "$dir/input"
  fi
  echo "$file"
}

# CPU time the whole machine has been busy (user, nice, system, irq, softirq, steal), in ticks.
TICK=$(getconf CLK_TCK)
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# Waits until the machine has been idle (under 0.1 CPU busy) for a second, at most QUIET_WAIT s.
wait_quiet() {
  local start=$SECONDS said=0 a b
  while ((SECONDS - start < QUIET_WAIT)); do
    a=$(busy_ticks)
    sleep 1
    b=$(busy_ticks)
    if (((b - a) * 10 < TICK)); then
      return 0
    fi
    if ((!said)); then
      log "waiting for other processes to finish (busy $(((b - a) * 100 / TICK))% of a CPU)"
      said=1
    fi
  done
  log "the machine is still busy after ${QUIET_WAIT}s; measuring anyway"
}
