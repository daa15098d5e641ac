# Shared by the scripts in this folder.

step() { printf '\n==> %s\n' "$*"; }

# The workspace needs Rust 1.95 or newer (edition 2024). Our machines have it through rustup.
require_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        . "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; install Rust 1.95 or newer with rustup (https://rustup.rs) and run again" >&2
        exit 2
    fi
    local version
    version=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.95.0\n' "$version" | sort -V | head -n1)" != "1.95.0" ]; then
        echo "error: rustc $version is too old; Updraft needs 1.95 or newer (rustup update)" >&2
        exit 2
    fi
}
