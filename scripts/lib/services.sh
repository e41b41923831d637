# Throwaway Redis and PostgreSQL servers on free ports of 127.0.0.1, and the process helpers
# around them. Sourced by scripts/test and scripts/cluster; not a program of its own.
#
# The caller defines `log MESSAGE` and `die MESSAGE` before sourcing, and calls `find_services`
# before starting anything. Everything these functions start keeps its files in the directory
# the caller gives, listens on 127.0.0.1 only, and is stopped by the matching *_stop function.
#
# shellcheck shell=bash

# alive PID: true while PID runs. An exited daemon may linger as a zombie until some init reaps
# it (slow in some containers); kill -0 succeeds on zombies, so check for that.
alive() {
    local state=""
    kill -0 "$1" 2>/dev/null || return 1
    # /proc/PID/stat is "pid (comm) state ..."; keep what follows the last ')'.
    state=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    state=${state##*) }
    [[ "${state:0:1}" != Z ]]
}

# stop_pid PID SIGNAL [SECONDS]: give PID about a second to exit on its own, then send SIGNAL,
# and KILL once SECONDS (default 5) have passed.
stop_pid() {
    local pid=$1 sig=$2 seconds=${3:-5} i
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    for i in $(seq 1 $((seconds * 10))); do
        alive "$pid" || return 0
        [[ $i -eq 10 ]] && kill "-$sig" "$pid" 2>/dev/null
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

# Print a TCP port on 127.0.0.1 that nothing is listening on right now.
free_port() {
    # Let the kernel pick one, if python3 is around.
    if command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null; then
        return 0
    fi
    # Otherwise probe random ports below the usual ephemeral range (32768+), so we do not
    # collide with outgoing connections: a refused connection means the port is free.
    local port _
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "could not find a free TCP port on 127.0.0.1"
}

# find_services: where the programs are. Sets redis_server, redis_cli, pg_bin (the directory of
# initdb and pg_ctl, empty if none), psql, and tmp_parent (where temp dirs go). Checks nothing:
# each caller decides what it needs and says what to install.
find_services() {
    redis_server=${NIGHTMARKET_TEST_REDIS_SERVER:-$(command -v redis-server || true)}
    redis_cli=$(command -v redis-cli || true)
    # Debian installs the server programs of each PostgreSQL major version under
    # /usr/lib/postgresql/<ver>/bin (not on PATH): take the highest version, else PATH.
    local initdb
    initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    [[ -x "$initdb" ]] || initdb=$(command -v initdb || true)
    pg_bin=""
    [[ -z "$initdb" ]] || pg_bin=$(dirname "$initdb")
    # Prefer the psql that matches the server version.
    if [[ -n "$pg_bin" && -x "$pg_bin/psql" ]]; then
        psql=$pg_bin/psql
    else
        psql=$(command -v psql || true)
    fi
    # As root, PostgreSQL runs as another user who must be able to reach its temp dir, and
    # root's TMPDIR may live under /root, so use /tmp then.
    if [[ $EUID -eq 0 ]]; then
        tmp_parent=/tmp
    else
        tmp_parent=${TMPDIR:-/tmp}
    fi
    pg_user=""
}

# redis_start DIR PORT [REDIS ARGS...]: a redis-server on 127.0.0.1:PORT keeping its files in
# DIR, detached from the terminal (so Ctrl-C reaches only the caller and its trap), answering
# PING within 10 s or the caller dies with its log.
redis_start() {
    local dir=$1 port=$2
    shift 2
    "$redis_server" \
        --bind 127.0.0.1 \
        --port "$port" \
        --dir "$dir" \
        --daemonize yes \
        --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" \
        "$@"
    for _ in $(seq 1 100); do
        [[ "$("$redis_cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && return 0
        sleep 0.1
    done
    log "redis-server log:"
    cat "$dir/redis.log" >&2 || true
    die "throwaway redis-server on port $port did not answer PING within 10 s"
}

# redis_stop DIR PORT: stops the redis-server redis_start started there.
redis_stop() {
    local dir=$1 port=$2 pid
    [[ -f "$dir/redis.pid" ]] || return 0
    # Read the pid first: Redis deletes its pid file while shutting down.
    pid=$(cat "$dir/redis.pid")
    "$redis_cli" -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1
    stop_pid "$pid" TERM
}

# Run a PostgreSQL server program (initdb, pg_ctl): they refuse to run as root, so as root they
# run as an unprivileged user. cd into the temp dir first so they do not complain about an
# inaccessible working directory (e.g. /root). Uses pg_dir.
as_pg() {
    if [[ -n "$pg_user" ]]; then
        (cd "$pg_dir" && runuser -u "$pg_user" -- "$@")
    else
        "$@"
    fi
}

# pg_start DIR PORT: initdb a throwaway cluster in DIR (trust auth for `postgres`, C locale, no
# fsync) and start it on 127.0.0.1:PORT with its socket in DIR. Sets pg_dir and pg_user.
pg_start() {
    pg_dir=$1
    local port=$2
    if [[ $EUID -eq 0 ]]; then
        # initdb/postgres refuse to run as root. The Debian postgresql package creates a
        # `postgres` system user; without it, create a dedicated unprivileged one.
        if id -u postgres >/dev/null 2>&1; then
            pg_user=postgres
        else
            pg_user=nightmarket-test
            if ! id -u "$pg_user" >/dev/null 2>&1; then
                useradd --system --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin "$pg_user"
            fi
        fi
    fi
    mkdir -p "$pg_dir/socket"
    if [[ -n "$pg_user" ]]; then
        chown -R "$pg_user:" "$pg_dir"
    fi

    # C locale: does not depend on which locales the machine has generated.
    as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres \
        --encoding=UTF8 --locale=C --no-sync >"$pg_dir/initdb.log" 2>&1 ||
        { cat "$pg_dir/initdb.log" >&2; die "initdb failed"; }

    # TCP on 127.0.0.1 only, Unix socket in our temp dir (never /var/run/postgresql),
    # durability off for speed: the cluster is thrown away.
    cat >>"$pg_dir/data/postgresql.conf" <<EOF

# Added by scripts/lib/services.sh (throwaway cluster)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pg_dir/socket'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

    as_pg "$pg_bin/pg_ctl" start -w -t 30 -D "$pg_dir/data" -l "$pg_dir/postgres.log" >/dev/null ||
        { cat "$pg_dir/postgres.log" >&2; die "throwaway PostgreSQL on port $port did not start"; }
}

# pg_createdb PORT NAME: a database in the cluster pg_start started.
pg_createdb() {
    "$psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres \
        -c "CREATE DATABASE $2" >/dev/null
}

# pg_stop: stops the cluster pg_start started (pg_dir), at once: its data is thrown away.
pg_stop() {
    # postmaster.pid exists only while the server runs (or after a crash).
    [[ -n "${pg_dir:-}" && -f "$pg_dir/data/postmaster.pid" ]] || return 0
    as_pg "$pg_bin/pg_ctl" stop -D "$pg_dir/data" -m immediate -w -t 10 >/dev/null 2>&1
    # If pg_ctl could not stop it, SIGQUIT is PostgreSQL's "immediate shutdown".
    if [[ -f "$pg_dir/data/postmaster.pid" ]]; then
        stop_pid "$(head -n 1 "$pg_dir/data/postmaster.pid" 2>/dev/null)" QUIT
    fi
}
