#!/usr/bin/env bash
# A real Outpost on 127.0.0.1 for the real-server suite and benchmarks.
#
#   bash tests/real/outpost.sh start   # installs what is missing, starts everything, prints `export` lines
#   bash tests/real/outpost.sh stop    # stops exactly what `start` started (PID files)
#   bash tests/real/outpost.sh status  # exit 0 when the server answers /healthz
#   bash tests/real/outpost.sh stop-outpost|start-outpost|restart-outpost|restart-rabbitmq
#                                      # the fault scenarios (each waits until healthy again)
#
# Redis, RabbitMQ and PostgreSQL come from Debian's packages, Outpost from the Go module proxy (built into
# the state folder, never committed). Everything lives under one ignored folder (.real-outpost/ unless
# REAL_OUTPOST_DIR says otherwise; OUTPOST_BIN_DIR may name already built binaries), on free ports chosen
# at the first start. Only the `export` lines go
# to stdout; progress and errors go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STATE="${REAL_OUTPOST_DIR:-$ROOT/.real-outpost}"
# v1.2.0 is the reference the notes were read from, but the module proxy here refuses it ("This module
# version is not available", also for its @v/list); v1.1.0 is the newest version it serves.
VERSION="${OUTPOST_VERSION:-v1.1.0}"
MODULE=github.com/hookdeck/outpost
PUBLISH_QUEUE="${OUTPOST_PUBLISH_QUEUE_NAME:-outpost-publish}"

say() { echo "outpost.sh: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }
tail_log() { [ -f "$1" ] && { say "last lines of $1:"; tail -n 30 "$1" >&2; } || true; }

# run_bounded SECONDS WHAT LOG -- command...: the command with a time bound and a clear failure.
run_bounded() {
    local seconds=$1 what=$2 log=$3; shift 4
    if ! timeout "$seconds" "$@" >>"$log" 2>&1; then
        tail_log "$log"
        die "$what (bounded to ${seconds}s; log: $log)"
    fi
}

# wait_for SECONDS WHAT LOG -- command...: retry the command every 0.25 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2 log=$3; shift 4
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            tail_log "$log"
            die "$what did not come up within ${seconds}s (log: $log)"
        fi
        sleep 0.25
    done
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
    done
    return 1
}

alive() { [ -f "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
    pg_bin >/dev/null || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} (apt)"
        run_bounded 300 "apt-get update" "$STATE/install.log" -- apt-get update -q
        # policy-rc.d keeps Debian from starting its own copies on the standard ports.
        local policy=/usr/sbin/policy-rc.d created=""
        if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created=1; fi
        run_bounded 600 "apt-get install ${missing[*]}" "$STATE/install.log" -- \
            env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
        [ -n "$created" ] && rm -f $policy
    fi
    command -v go >/dev/null || die "go is not installed (Outpost is built from the Go module proxy)"
}

build_outpost() {
    BIN="${OUTPOST_BIN_DIR:-$STATE/bin/$VERSION}"
    if [ -x "$BIN/outpost" ] && [ -x "$BIN/outpost-server" ]; then return; fi
    mkdir -p "$BIN"
    say "building Outpost $VERSION from the Go module proxy (the first time takes a few minutes)"
    local started=$SECONDS
    # `go install pkg@version` would also read the module's version list, which the proxy refuses:
    # download the one version, then build its two commands from the module cache.
    run_bounded 600 "go mod download $MODULE@$VERSION" "$STATE/build.log" -- go mod download "$MODULE@$VERSION"
    local src
    src="$(go env GOMODCACHE)/$MODULE@$VERSION"
    (cd "$src" && run_bounded 1500 "go build ./cmd/outpost ./cmd/outpost-server" "$STATE/build.log" -- \
        env GOFLAGS=-mod=readonly go build -o "$BIN/" ./cmd/outpost ./cmd/outpost-server)
    say "built Outpost $VERSION in $((SECONDS - started))s"
}

choose_ports() {
    if [ -f "$STATE/ports" ]; then
        # shellcheck disable=SC1091
        . "$STATE/ports"
        return
    fi
    REDIS_PORT=$(free_port); PG_PORT=$(free_port); AMQP_PORT=$(free_port); DIST_PORT=$(free_port)
    EPMD_PORT=$(free_port); API_PORT=$(free_port)
    API_KEY="real-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
    JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    AES_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    cat >"$STATE/ports" <<EOF
REDIS_PORT=$REDIS_PORT
PG_PORT=$PG_PORT
AMQP_PORT=$AMQP_PORT
DIST_PORT=$DIST_PORT
EPMD_PORT=$EPMD_PORT
API_PORT=$API_PORT
API_KEY=$API_KEY
JWT_SECRET=$JWT_SECRET
AES_SECRET=$AES_SECRET
EOF
    chmod 600 "$STATE/ports"
}

start_redis() {
    alive "$STATE/redis/redis.pid" && return
    mkdir -p "$STATE/redis"
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    run_bounded 20 "redis-server" "$STATE/redis/redis.log" -- redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --daemonize yes --dir "$STATE/redis" --save "" --appendonly no \
        --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log"
    wait_for 20 "Redis" "$STATE/redis/redis.log" -- redis-cli -p "$REDIS_PORT" ping
}

start_postgres() {
    local bin data="$STATE/postgres/data" log="$STATE/postgres-setup.log" server_log="$STATE/postgres/log/server.log"
    bin=$(pg_bin)
    if [ -f "$data/postmaster.pid" ] && kill -0 "$(head -n1 "$data/postmaster.pid")" 2>/dev/null; then return; fi
    mkdir -p "$STATE/postgres/socket" "$STATE/postgres/log"
    chown -R postgres:postgres "$STATE/postgres"
    if [ ! -f "$data/PG_VERSION" ]; then
        say "initialising PostgreSQL in $data"
        run_bounded 120 "initdb" "$log" -- runuser -u postgres -- "$bin/initdb" -D "$data" --auth=trust -U postgres
    fi
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    run_bounded 60 "pg_ctl start" "$log" -- runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$server_log" -w -t 50 \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $STATE/postgres/socket -c fsync=off" start
    if ! runuser -u postgres -- "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='outpost'" 2>>"$log" | grep -q 1; then
        run_bounded 30 "createdb outpost" "$log" -- runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 \
            -p "$PG_PORT" -U postgres outpost
    fi
}

rabbit_cmd() {
    # The broker's environment: its ports, node name, cookie and directories, all under the state folder.
    RABBIT=(runuser -u rabbitmq -- env HOME="$STATE/rabbitmq" RABBITMQ_NODENAME="minipub-$AMQP_PORT@localhost"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT"
        ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$STATE/rabbitmq/mnesia"
        RABBITMQ_LOG_BASE="$STATE/rabbitmq/log" RABBITMQ_PID_FILE="$STATE/rabbitmq/rabbitmq.pid"
        RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/rabbitmq/enabled_plugins")
    RABBITMQCTL=("${RABBIT[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "minipub-$AMQP_PORT@localhost")
}

start_rabbitmq() {
    local log="$STATE/rabbitmq/start.log"
    rabbit_cmd
    alive "$STATE/rabbitmq/rabbitmq.pid" || boot_rabbitmq "$log"
    # The queue Outpost consumes publishes from: Outpost never declares it (the operator does).
    run_bounded 30 "declare the publish queue $PUBLISH_QUEUE" "$log" -- "${RABBITMQCTL[@]}" eval \
        "rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, <<\"$PUBLISH_QUEUE\">>), true, false, [], none, <<\"outpost.sh\">>)."
}

boot_rabbitmq() {
    local log=$1
    mkdir -p "$STATE/rabbitmq/mnesia" "$STATE/rabbitmq/log"
    [ -f "$STATE/rabbitmq/enabled_plugins" ] || echo "[]." >"$STATE/rabbitmq/enabled_plugins"
    [ -f "$STATE/rabbitmq/.erlang.cookie" ] || python3 -c 'import secrets; print(secrets.token_hex(20).upper(), end="")' \
        >"$STATE/rabbitmq/.erlang.cookie"
    chmod 400 "$STATE/rabbitmq/.erlang.cookie"
    chown -R rabbitmq:rabbitmq "$STATE/rabbitmq"
    say "starting RabbitMQ on 127.0.0.1:$AMQP_PORT (epmd on $EPMD_PORT)"
    "${RABBIT[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server -detached >>"$log" 2>&1 || true
    # await_startup fails at once while the node has not registered with epmd yet: ask again.
    local deadline=$((SECONDS + 90))
    until timeout 30 "${RABBITMQCTL[@]}" await_startup --timeout 25 >>"$log" 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            tail_log "$log"
            for f in "$STATE"/rabbitmq/log/*.log; do tail_log "$f"; done
            die "RabbitMQ did not start within 90s"
        fi
        sleep 0.5
    done
    # epmd is started by the broker on our ERL_EPMD_PORT: record it so that stop ends it too.
    epmd_pid >"$STATE/rabbitmq/epmd.pid"
}

epmd_pid() {
    local pid
    pid=$(ss -ltnpH "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2) || true
    [ -n "$pid" ] && grep -q epmd "/proc/$pid/comm" 2>/dev/null && echo "$pid"
    return 0
}

outpost_env() {
    echo env API_KEY="$API_KEY" API_JWT_SECRET="$JWT_SECRET" AES_ENCRYPTION_SECRET="$AES_SECRET" \
        API_PORT="$API_PORT" REDIS_HOST=127.0.0.1 REDIS_PORT="$REDIS_PORT" REDIS_PASSWORD= \
        RABBITMQ_SERVER_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT" \
        POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/outpost?sslmode=disable" \
        PUBLISH_RABBITMQ_SERVER_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT" PUBLISH_RABBITMQ_QUEUE="$PUBLISH_QUEUE" \
        DISABLE_TELEMETRY=true LOG_LEVEL=warn
}

healthy() { curl -fsS -m 2 "http://127.0.0.1:$API_PORT/healthz" 2>/dev/null | grep -q '"healthy"'; }

start_outpost() {
    local log="$STATE/outpost/outpost.log"
    mkdir -p "$STATE/outpost"
    if alive "$STATE/outpost/outpost.pid" && healthy; then return; fi
    # Every start: Redis keeps no data across a restart (--save ""), so its migrations are applied again
    # (the command is idempotent and quick; Outpost refuses to start with any pending).
    say "applying Outpost's migrations"
    # shellcheck disable=SC2046
    run_bounded 120 "outpost migrate apply" "$log" -- $(outpost_env) "$BIN/outpost" migrate apply --yes
    say "starting outpost-server on 127.0.0.1:$API_PORT"
    # shellcheck disable=SC2046
    setsid $(outpost_env) "$BIN/outpost-server" >>"$log" 2>&1 </dev/null &
    echo $! >"$STATE/outpost/outpost.pid"
    local deadline=$((SECONDS + 90))
    until healthy; do
        if ! alive "$STATE/outpost/outpost.pid"; then
            tail_log "$log"
            die "outpost-server exited before /healthz answered (log: $log)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail_log "$log"
            die "outpost-server /healthz did not come up within 90s (log: $log)"
        fi
        sleep 0.25
    done
}

print_env() {
    cat >"$STATE/env" <<EOF
export OUTPOST_API_BASE_URL=http://127.0.0.1:$API_PORT/api/v1
export OUTPOST_API_KEY=$API_KEY
export OUTPOST_PUBLISH_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
export OUTPOST_PUBLISH_RABBITMQ_QUEUE=$PUBLISH_QUEUE
EOF
    chmod 600 "$STATE/env"
    cat "$STATE/env"
}

start() {
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    [ -f "$STATE/.gitignore" ] || echo "*" >"$STATE/.gitignore"
    local started=$SECONDS
    install_packages
    build_outpost
    echo "$BIN" >"$STATE/bin-dir"  # where restart-outpost finds the binaries
    choose_ports
    start_redis
    start_postgres
    start_rabbitmq
    start_outpost
    say "ready in $((SECONDS - started))s: Outpost $VERSION on http://127.0.0.1:$API_PORT (state in $STATE)"
    print_env
}

stop_pidfile() {
    local file=$1 name=$2 pid
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(head -n1 "$file")
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
}

stop() {
    [ -d "$STATE" ] || { say "nothing to stop ($STATE does not exist)"; return 0; }
    [ -f "$STATE/ports" ] && . "$STATE/ports"
    stop_pidfile "$STATE/outpost/outpost.pid" outpost-server
    if alive "$STATE/rabbitmq/rabbitmq.pid"; then
        say "stopping RabbitMQ"
        rabbit_cmd
        timeout 60 "${RABBITMQCTL[@]}" stop >/dev/null 2>&1 || true
        stop_pidfile "$STATE/rabbitmq/rabbitmq.pid" RabbitMQ
    fi
    # epmd on our own port is ours, recorded or not (a failed start may not have written its PID file).
    [ -n "${EPMD_PORT:-}" ] && [ ! -f "$STATE/rabbitmq/epmd.pid" ] && epmd_pid >"$STATE/rabbitmq/epmd.pid"
    stop_pidfile "$STATE/rabbitmq/epmd.pid" epmd
    local data="$STATE/postgres/data" bin
    if [ -f "$data/postmaster.pid" ] && kill -0 "$(head -n1 "$data/postmaster.pid")" 2>/dev/null; then
        say "stopping PostgreSQL"
        bin=$(pg_bin)
        timeout 60 runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    stop_pidfile "$STATE/redis/redis.pid" Redis
    rm -f "$STATE/env"
}

status() {
    [ -f "$STATE/ports" ] || exit 1
    . "$STATE/ports"
    healthy
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart-outpost)  # the kill-and-restart scenarios: SIGKILL the server, start it again
        . "$STATE/ports"; BIN="${OUTPOST_BIN_DIR:-$(cat "$STATE/bin-dir" 2>/dev/null || echo "$STATE/bin/$VERSION")}"
        if alive "$STATE/outpost/outpost.pid"; then kill -9 "$(head -n1 "$STATE/outpost/outpost.pid")"; fi
        # SIGKILL is not instant: wait until the old process stops answering, or start_outpost sees it healthy.
        for _ in $(seq 1 100); do healthy || break; sleep 0.05; done
        start_outpost ;;
    stop-outpost)  # the queue scenarios: Outpost away while publishes go on into its queue
        . "$STATE/ports"; stop_pidfile "$STATE/outpost/outpost.pid" outpost-server ;;
    start-outpost)
        . "$STATE/ports"; BIN="${OUTPOST_BIN_DIR:-$STATE/bin/$VERSION}"; start_outpost ;;
    restart-rabbitmq)  # stop the broker cleanly, boot it again (durable queues and persistent messages stay).
        # Outpost v1.1.0's consumers do not reconnect after a broker restart ("channel/connection is not
        # open" forever), and a webhook delivered while the broker is down is delivered again (its
        # post-delivery log publish fails, the delivery message is nacked): Outpost is stopped first and
        # started after, as an operator restarting the broker would have to.
        . "$STATE/ports"; rabbit_cmd; BIN="${OUTPOST_BIN_DIR:-$STATE/bin/$VERSION}"
        stop_pidfile "$STATE/outpost/outpost.pid" outpost-server
        timeout 60 "${RABBITMQCTL[@]}" stop >/dev/null 2>&1 || true
        stop_pidfile "$STATE/rabbitmq/rabbitmq.pid" RabbitMQ
        start_rabbitmq
        start_outpost ;;
    *) echo "usage: bash tests/real/outpost.sh start|stop|status|restart-outpost|stop-outpost|start-outpost|restart-rabbitmq" >&2
       exit 2 ;;
esac
