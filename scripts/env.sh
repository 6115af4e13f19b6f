# Sourced by scripts/test and scripts/demo. Creates (once) a virtual
# environment cached outside the checkout, keyed by a hash of the
# requirements, installs specnet into it in editable mode, and activates it.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SPECNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/specnet}"
key="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)"
venv="$cache/venv-$key"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one installer at a time; others wait and then find it done
if [ ! -f "$venv/.deps-ok" ]; then
    echo "specnet: first run: creating $venv with the pinned versions of constraints.txt." >&2
    echo "specnet: torch and its CUDA libraries make it about 6.3 GB: 3 minutes from a nearby package" >&2
    echo "specnet: mirror, much longer over a slow connection. Later runs start at once." >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    log="$cache/install.log"
    # pip's own lines (each package as it is collected, each download with its size), less
    # the noise; all of it goes to the log.
    status=0
    "$venv/bin/python" -m pip install -c "$root/constraints.txt" -e "$root[dev]" \
        > >(tee "$log" | grep --line-buffered -E \
            '^(Collecting|  Downloading|  Using cached|Installing|Successfully|ERROR)' \
            | sed -u 's/^ */specnet: pip: /' >&2) 2>&1 || status=$?
    wait ${!-} 2>/dev/null || true  # the filter's last lines (${!-}: unset under set -u in bash 5.2)
    if [ "$status" != 0 ]; then
        grep -v "^WARNING: Location" "$log" | tail -30 >&2
        echo "specnet: installing the environment failed (log: $log)" >&2
        return 1 2>/dev/null || exit 1
    fi
    touch "$venv/.deps-ok"
    echo "$root" > "$venv/.checkout"
fi
# An environment made for another checkout is pointed at this one (cheap:
# the dependencies are already there).
if [ "$(cat "$venv/.checkout" 2>/dev/null)" != "$root" ]; then
    "$venv/bin/python" -m pip install -q --no-deps -e "$root" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    echo "$root" > "$venv/.checkout"
fi
flock -u 9
exec 9>&-
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
