# Sourced by the bench scripts once they have set ROOT: their log line, and the build of what
# they measure, so that the profile the benchmarks use is the shipped one, chosen here alone.

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
