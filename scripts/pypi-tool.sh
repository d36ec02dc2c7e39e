#!/usr/bin/env bash
# Installs a pinned PyPI package once under .tools/<dir> (pip --target, wheels only), for the
# scripts that run a Python tool against the platform (openai-smoke.sh, schemathesis.sh):
#
#   . scripts/pypi-tool.sh
#   pypi_tool_install <who> <package> <version> <dir>   # prints nothing when already there
#
# The tool's packages are then importable with PYTHONPATH=.tools/<dir>.

# pypi_tool_install WHO PACKAGE VERSION DIR: PACKAGE==VERSION into $REPO_ROOT/.tools/DIR.
pypi_tool_install() {
    local who="$1" package="$2" version="$3" dir="$4"
    local root target marker staging
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
    target="$root/.tools/$dir"
    marker="$target/.installed-$version"
    [ -f "$marker" ] && return 0
    command -v python3 >/dev/null 2>&1 || {
        printf '%s: error: python3 (with pip) is needed\n' "$who" >&2
        return 1
    }
    printf '%s: installing %s==%s into .tools/%s (once)\n' "$who" "$package" "$version" "$dir" >&2
    mkdir -p "$root/.tools"
    staging="$(mktemp -d "$root/.tools/$dir.XXXXXX")"
    if ! python3 -m pip install --quiet --no-input --disable-pip-version-check \
        --only-binary=:all: --target "$staging" "$package==$version"; then
        rm -rf "$staging"
        printf '%s: error: pip install %s==%s failed\n' "$who" "$package" "$version" >&2
        return 1
    fi
    touch "$staging/.installed-$version"
    rm -rf "$target"
    mv "$staging" "$target"
}
