# Shared by scripts/run and scripts/test: installs what Vigil needs to build,
# only when it is missing. Sourced, not run.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
# apt_install PKG...: installs the Debian packages among PKG that are not installed yet.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# ensure_rust: a Rust toolchain new enough for the workspace, with rustfmt and clippy.
ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v cargo >/dev/null 2>&1; then
        apt_install curl ca-certificates
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        . "$HOME/.cargo/env"
    fi
    if command -v rustup >/dev/null 2>&1; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
}

# need CMD PKG...: installs the Debian packages PKG unless CMD is already on PATH.
need() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 || apt_install "$@"
}

# ensure_build_deps: the C toolchain the crates build with, and FFmpeg's
# libraries and clang for the converter (ffmpeg-next binds them with bindgen).
ensure_build_deps() {
    need cc build-essential
    need pkg-config pkg-config
    apt_install libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libclang-dev clang
}
