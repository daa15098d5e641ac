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

# What the desktop app needs from Debian to build and to be tested headless (see
# ../shared/reference/tauri-build.md): WebKitGTK and GTK for the window, Xvfb and a D-Bus session
# for running it without a screen, dunst to receive its desktop notices, WebKitWebDriver for the
# end-to-end tests. Installs only what is missing, and only where apt-get can (as root).
DESKTOP_PACKAGES=(build-essential pkg-config libssl-dev file
    libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev librsvg2-dev
    libdbus-1-dev libayatana-appindicator3-dev libxdo-dev
    xvfb xauth dbus dbus-x11 x11-utils xdotool imagemagick fonts-dejavu-core
    webkit2gtk-driver dunst libnotify-bin gnome-keyring)
require_desktop_packages() {
    local missing=() p
    for p in "${DESKTOP_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "error: the desktop app needs these Debian packages: ${missing[*]}" >&2
            echo "       install them (sudo apt-get install ${missing[*]}) and run again" >&2
            exit 2
        fi
        step "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

require_node() {
    if ! command -v npm >/dev/null 2>&1; then
        echo "error: npm not found; the UI needs Node.js 20 or newer with npm" >&2
        exit 2
    fi
}

# The web UI, built into ui/dist, which the app embeds at compile time.
build_ui() {
    require_node
    if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
        step "npm ci (ui/)"
        (cd ui && npm ci --no-audit --no-fund --loglevel=error)
    fi
    step "vite build (ui/ -> ui/dist)"
    (cd ui && npm run --silent build -- --logLevel warn)
}
