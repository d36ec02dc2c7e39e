#!/usr/bin/env bash
# Makes sure the build tools exist. Idempotent; prints nothing when everything is present.
#
# - mold: .cargo/config.toml links x86_64-unknown-linux-gnu with `-fuse-ld=mold` (several times
#   faster than ld.bfd for the test binaries). Installed from Debian's package when missing and
#   we are root with apt-get.
# - a C compiler driver (cc), which rustc links through and which passes -fuse-ld=mold on.
# - cargo-nextest is deliberately NOT required: the project uses plain `cargo test`.
# - with --bench: wrk, the HTTP load generator of the benchmarks (`make bench`).
set -euo pipefail

note() { printf 'ensure-tools: %s\n' "$*" >&2; }

can_apt() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }

APT_UPDATED=""
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$APT_UPDATED" ]]; then
        apt-get update -qq >/dev/null || return 1
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    note "cargo is not on PATH: install the Rust toolchain (rustup) first"
fi

if ! command -v cc >/dev/null 2>&1; then
    if can_apt; then
        note "installing gcc (apt-get)"
        apt_install gcc libc6-dev || true
    fi
    command -v cc >/dev/null 2>&1 || note "no C compiler (cc) found: rustc needs one to link"
fi

if ! command -v mold >/dev/null 2>&1; then
    if can_apt; then
        note "installing mold (apt-get)"
        apt_install mold || true
    fi
    if ! command -v mold >/dev/null 2>&1; then
        note "mold is not available, but .cargo/config.toml links with -fuse-ld=mold."
        note "  Use the default linker instead with: export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS=\"\""
    fi
fi

if [[ ${1:-} == --bench ]] && ! command -v wrk >/dev/null 2>&1; then
    if can_apt; then
        note "installing wrk (apt-get)"
        apt_install wrk || true
    fi
    command -v wrk >/dev/null 2>&1 || note "wrk is not available: the Telegram benchmark needs it"
fi
