#!/usr/bin/env bash
# scripts/stack.sh: the local stand-ins for Parley's production backends.
#
#   scripts/stack.sh up   [--user NAME [--pid PID]]   install what is missing, start what is not
#                                           running, create the table and bucket, write stack.env
#   scripts/stack.sh down [--user NAME [--pid PID]]   release NAME; when no user is left, stop
#                                           what `up` started (never what was already running)
#   scripts/stack.sh env                    print the export lines of stack.env
#   scripts/stack.sh status                 say which services answer
#
# Everything listens on 127.0.0.1. MariaDB (3306) and Redis (6379) are usually already running
# (this kind of machine starts them); the others run on fixed non-default ports:
#   dynalite (DynamoDB) 4567, MinIO (S3) 9100 (+ console 9101), Mailpit SMTP 1026 / HTTP 8026,
#   and a Redis Cluster of three masters (7101-7103) with one replica each (7104-7106; each
#   node also uses its port + 10000 for the cluster bus), for the sharded pub/sub tests.
# Go-built tools live in a cache folder outside the repo (never in it); run data and logs in .stack/.
# Users: `make stack` is the user "manual" (until `make stack-down`); each `make test` is
# "test" with its shell's PID, and counts only while that process lives. So `make test` beside
# `make stack`, or two `make test` runs at once, never stop services under each other's feet.
set -Eeuo pipefail
trap 'printf "stack: ERROR: \"%s\" failed (exit %s, line %s)\n" "$BASH_COMMAND" "$?" "$LINENO" >&2' ERR

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${PARLEY_STACK_DIR:-$ROOT/.stack}
CACHE_DIR=${PARLEY_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley-stack}
BIN_DIR=$CACHE_DIR/bin
LOG_DIR=$RUN_DIR/logs
ENV_FILE=${PARLEY_STACK_ENV_FILE:-$ROOT/stack.env}
RECORD=$RUN_DIR/started
USERS_DIR=$RUN_DIR/users
STACK_USER=manual
STACK_USER_PID=

# Pinned tools. Newer versions may need a newer Go than the machine's.
MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MAILPIT_MODULE=github.com/axllent/mailpit
MAILPIT_VERSION=v1.33.1

HOST=127.0.0.1
# MariaDB and Redis keep their standard ports; the overrides exist to test this script beside them.
MYSQL_PORT=${PARLEY_STACK_MYSQL_PORT:-3306}
MYSQL_SOCKET=${PARLEY_STACK_MYSQL_SOCKET:-}
REDIS_PORT=${PARLEY_STACK_REDIS_PORT:-6379}
DYNAMO_PORT=${PARLEY_STACK_DYNAMO_PORT:-4567}
MINIO_PORT=${PARLEY_STACK_MINIO_PORT:-9100}
MINIO_CONSOLE_PORT=${PARLEY_STACK_MINIO_CONSOLE_PORT:-9101}
SMTP_PORT=${PARLEY_STACK_SMTP_PORT:-1026}
MAILPIT_PORT=${PARLEY_STACK_MAILPIT_PORT:-8026}
# The cluster's first port; the six nodes take it and the next five (each ≤ 55535).
CLUSTER_PORT=${PARLEY_STACK_REDIS_CLUSTER_PORT:-7101}
CLUSTER_NODES=6

# Local-only credentials and names (MinIO wants a password of 8+ characters).
MINIO_USER=parley-minio
MINIO_PASSWORD=parley-minio-secret
REGION=us-east-1
TABLE=message
BUCKET=parley-transcripts
APP_DB=parley
MYSQL_TCP_USER=parley
MYSQL_TCP_PASSWORD=parley

READY_TIMEOUT=${PARLEY_STACK_READY_TIMEOUT:-60}
export DEBIAN_FRONTEND=noninteractive GOTOOLCHAIN=local GOWORK=off
export PATH="$PATH:/usr/local/go/bin"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# tail_log FILE: show the end of a log after a failure.
tail_log() {
  [ -f "$1" ] || return 0
  printf -- '----- last lines of %s -----\n' "$1" >&2
  tail -n 30 "$1" >&2 || true
  printf -- '-----\n' >&2
}

# tcp_open HOST PORT: true when something accepts a connection within a second.
tcp_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# http_ok URL: true when the URL answers 2xx within two seconds.
http_ok() { curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; }

# wait_until NAME LOG PID CHECK...: poll CHECK every 0.2 s until it passes, the process dies or
# READY_TIMEOUT seconds pass; on failure print the log tail and exit.
wait_until() {
  local name=$1 logf=$2 pid=$3; shift 3
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@"; do
    if [ -n "$pid" ] && ! alive "$pid" "$(start_time "$pid")"; then
      tail_log "$logf"; die "$name exited before it was ready (log: $logf)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail_log "$logf"; die "$name not ready after ${READY_TIMEOUT}s (log: $logf)"
    fi
    sleep 0.2
  done
}

# start_time PID: the process's start time in clock ticks, so `down` never signals a reused PID.
start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# start_bg NAME COMMAND...: start COMMAND detached (own session, no inherited terminal or
# pipes, so CI's output capture does not wait on it) and record its PID. Sets STARTED_PID.
start_bg() {
  local name=$1; shift
  local logf=$LOG_DIR/$name.log
  : >"$logf"
  # 9>&-: the service must not inherit the lock below, or the next stack.sh would wait on it.
  setsid "$@" >>"$logf" 2>&1 </dev/null 9>&- &
  STARTED_PID=$!
  printf '%s %s %s\n' "$name" "$STARTED_PID" "$(start_time "$STARTED_PID")" >>"$RECORD"
  log "started $name (pid $STARTED_PID, log $logf)"
}

# apt_install PACKAGE...: install with apt, refreshing the package lists only when needed.
apt_install() {
  local logf=$LOG_DIR/apt.log
  log "apt-get install $* (log $logf)"
  if ! apt-get install -y "$@" >>"$logf" 2>&1; then
    log "install failed; running apt-get update and trying again"
    apt-get update >>"$logf" 2>&1 || { tail_log "$logf"; die "apt-get update failed"; }
    apt-get install -y "$@" >>"$logf" 2>&1 || { tail_log "$logf"; die "apt-get install $* failed"; }
  fi
}

# go_tool_current NAME MODULE VERSION: true when the cached binary was built from MODULE@VERSION.
go_tool_current() {
  local bin=$BIN_DIR/$1
  [ -x "$bin" ] && go version -m "$bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$2[[:space:]]+$3([[:space:]]|$)"
}

# go_install_bg NAME MODULE VERSION: start `go install` into the cache unless current there.
# Sets INSTALL_PID_<NAME> (empty when nothing to do).
go_install_bg() {
  local name=$1 module=$2 version=$3
  printf -v "INSTALL_PID_$name" '%s' ''
  go_tool_current "$name" "$module" "$version" && return 0
  command -v go >/dev/null || die "go is not on PATH (expected /usr/local/go/bin/go)"
  mkdir -p "$BIN_DIR"
  log "building $module@$version into $BIN_DIR (slow the first time: MinIO ~3.5 min, Mailpit ~80 s)"
  (cd "$CACHE_DIR" && env -u GOFLAGS GOBIN="$BIN_DIR" go install "$module@$version") \
    >"$LOG_DIR/install-$name.log" 2>&1 </dev/null 9>&- &
  printf -v "INSTALL_PID_$name" '%s' "$!"
}

# go_install_wait NAME MODULE VERSION: wait for go_install_bg and check the result.
go_install_wait() {
  local name=$1 pidvar="INSTALL_PID_$1"
  [ -n "${!pidvar+set}" ] || go_install_bg "$@"
  local pid=${!pidvar:-}
  if [ -n "$pid" ]; then
    wait "$pid" || { tail_log "$LOG_DIR/install-$name.log"; die "go install $2@$3 failed"; }
    log "built $name"
  fi
  go_tool_current "$name" "$2" "$3" || die "$BIN_DIR/$name is not $2@$3 after install"
}

# ensure_mariadb: MariaDB answering on 127.0.0.1:3306, installed and started if needed;
# sets MYSQL_USERINFO to the DSN user part that works over TCP.
ensure_mariadb() {
  if ! tcp_open "$HOST" "$MYSQL_PORT"; then
    [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  fi
  if ! tcp_open "$HOST" "$MYSQL_PORT"; then
    install -d -o mysql -g mysql /run/mysqld 2>/dev/null || mkdir -p /run/mysqld
    start_bg mariadb /usr/sbin/mariadbd --user=mysql --bind-address="$HOST" --port="$MYSQL_PORT"
    wait_until MariaDB "$LOG_DIR/mariadb.log" "$STARTED_PID" tcp_open "$HOST" "$MYSQL_PORT"
  fi
  mysql_client_setup
}

# mysql_client: print the name of the MariaDB/MySQL command-line client, installing it if absent.
mysql_client() {
  command -v mariadb >/dev/null || command -v mysql >/dev/null || apt_install mariadb-client
  command -v mariadb || command -v mysql
}

# mysql_client_setup: pick root over TCP, or (plain Debian, where root is socket-only) create a
# password user for TCP through the socket; then create the app's database.
mysql_client_setup() {
  local client; client=$(mysql_client)
  local tcp=("$client" --protocol=TCP -h "$HOST" -P "$MYSQL_PORT" --connect-timeout=5)
  if "${tcp[@]}" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    MYSQL_USERINFO=root
  elif "${tcp[@]}" -u"$MYSQL_TCP_USER" -p"$MYSQL_TCP_PASSWORD" -e 'SELECT 1' >/dev/null 2>&1; then
    MYSQL_USERINFO=$MYSQL_TCP_USER:$MYSQL_TCP_PASSWORD
  else
    log "MariaDB root cannot log in over TCP (socket-only root); creating user '$MYSQL_TCP_USER' through the socket"
    local sock=(); [ -n "$MYSQL_SOCKET" ] && sock=(--socket="$MYSQL_SOCKET")
    "$client" "${sock[@]}" -uroot -e "
      CREATE USER IF NOT EXISTS '$MYSQL_TCP_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_TCP_PASSWORD';
      CREATE USER IF NOT EXISTS '$MYSQL_TCP_USER'@'localhost' IDENTIFIED BY '$MYSQL_TCP_PASSWORD';
      GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_TCP_USER'@'127.0.0.1' WITH GRANT OPTION;
      GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_TCP_USER'@'localhost' WITH GRANT OPTION;" \
      || die "cannot log in to MariaDB as root over TCP or the socket; set it up so root@127.0.0.1 works"
    MYSQL_USERINFO=$MYSQL_TCP_USER:$MYSQL_TCP_PASSWORD
  fi
  printf '%s\n' "$MYSQL_USERINFO" >"$RUN_DIR/mysql-user"
  local user=${MYSQL_USERINFO%%:*} pass=${MYSQL_USERINFO#*:}
  [ "$pass" = "$MYSQL_USERINFO" ] && pass=
  MYSQL_PWD=$pass "${tcp[@]}" -u"$user" -e "CREATE DATABASE IF NOT EXISTS \`$APP_DB\`" \
    || die "cannot create database $APP_DB in MariaDB"
}

# ensure_redis: Redis answering on 127.0.0.1:6379, installed and started if needed.
ensure_redis() {
  tcp_open "$HOST" "$REDIS_PORT" && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  tcp_open "$HOST" "$REDIS_PORT" && return 0
  mkdir -p "$RUN_DIR/redis"
  start_bg redis redis-server --bind "$HOST" --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$RUN_DIR/redis" --daemonize no
  wait_until Redis "$LOG_DIR/redis.log" "$STARTED_PID" tcp_open "$HOST" "$REDIS_PORT"
}

# cluster_ports: the ports of the Redis Cluster's nodes, masters first.
cluster_ports() { seq "$CLUSTER_PORT" $((CLUSTER_PORT + CLUSTER_NODES - 1)); }

# cluster_ok PORT: the node answers and sees the whole cluster serving every slot.
cluster_ok() {
  local info; info=$(redis-cli -h "$HOST" -p "$1" cluster info 2>/dev/null) || return 1
  grep -q '^cluster_state:ok' <<<"$info" && grep -q "^cluster_known_nodes:$CLUSTER_NODES" <<<"$info"
}

# cluster_ready: every node sees the cluster as ok.
cluster_ready() {
  local p
  for p in $(cluster_ports); do cluster_ok "$p" || return 1; done
}

# ensure_redis_cluster: three masters and three replicas in cluster mode, in memory only;
# created from scratch when none of its nodes runs.
ensure_redis_cluster() {
  cluster_ready && return 0
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools
  local p up=0 addrs=()
  for p in $(cluster_ports); do
    tcp_open "$HOST" "$p" && up=$((up + 1))
    addrs+=("$HOST:$p")
  done
  if [ "$up" -ne 0 ]; then
    # Nodes that survived a crash rejoin by themselves; give them the readiness timeout.
    [ "$up" -eq "$CLUSTER_NODES" ] || die "the Redis Cluster on ports $CLUSTER_PORT+ is partly up ($up of $CLUSTER_NODES nodes); stop them (make stack-down) and retry"
    wait_until "Redis Cluster" "$LOG_DIR/redis-cluster-$CLUSTER_PORT.log" "" cluster_ready
    return 0
  fi
  rm -rf "$RUN_DIR/redis-cluster"
  mkdir -p "$RUN_DIR/redis-cluster"
  for p in $(cluster_ports); do
    start_bg "redis-cluster-$p" redis-server --bind "$HOST" --port "$p" --cluster-enabled yes \
      --cluster-config-file "$RUN_DIR/redis-cluster/nodes-$p.conf" --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$RUN_DIR/redis-cluster" --daemonize no
  done
  for p in $(cluster_ports); do
    wait_until "Redis Cluster node $p" "$LOG_DIR/redis-cluster-$p.log" "" tcp_open "$HOST" "$p"
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$LOG_DIR/redis-cluster-create.log" 2>&1 \
    || { tail_log "$LOG_DIR/redis-cluster-create.log"; die "redis-cli --cluster create failed"; }
  wait_until "Redis Cluster" "$LOG_DIR/redis-cluster-create.log" "" cluster_ready
  log "Redis Cluster ready on $HOST:$CLUSTER_PORT-$((CLUSTER_PORT + CLUSTER_NODES - 1))"
}

# cluster_url: go-redis's cluster URL form, every node a seed (after a failover any of
# them may be a master).
cluster_url() {
  local p url="redis://$HOST:$CLUSTER_PORT" sep='?'
  for p in $(cluster_ports | tail -n +2); do url+="${sep}addr=$HOST:$p"; sep='&'; done
  printf '%s\n' "$url"
}

# dynalite_current: node_modules matches the committed package-lock.json.
dynalite_current() {
  [ -f "$ROOT/test/node_modules/dynalite/cli.js" ] &&
    [ "$(cat "$ROOT/test/node_modules/.parley-lock.sha256" 2>/dev/null)" = "$(sha256sum <"$ROOT/test/package-lock.json")" ]
}

# ensure_dynalite_installed: `npm ci` in test/ unless node_modules is current.
ensure_dynalite_installed() {
  dynalite_current && return 0
  command -v npm >/dev/null || apt_install nodejs npm
  log "npm ci in test/ (dynalite; log $LOG_DIR/npm.log)"
  (cd "$ROOT/test" && npm ci --no-audit --no-fund) >"$LOG_DIR/npm.log" 2>&1 \
    || { tail_log "$LOG_DIR/npm.log"; die "npm ci in test/ failed"; }
  sha256sum <"$ROOT/test/package-lock.json" >"$ROOT/test/node_modules/.parley-lock.sha256"
}

# ensure_dynalite: dynalite answering on its port; in memory, so every start is empty.
ensure_dynalite() {
  dynalite_ready && return 0
  ensure_dynalite_installed
  start_bg dynalite node "$ROOT/test/dynalite.js" --host "$HOST" --port "$DYNAMO_PORT" \
    --createTableMs 0 --deleteTableMs 0 --updateTableMs 0
  PENDING+=("dynalite $STARTED_PID dynalite_ready")
}

# ensure_minio: MinIO healthy on its port, data under .stack/minio.
ensure_minio() {
  minio_ready && return 0
  tcp_open "$HOST" "$MINIO_PORT" && die "port $MINIO_PORT is taken by something that is not MinIO"
  go_install_wait minio "$MINIO_MODULE" "$MINIO_VERSION"
  mkdir -p "$RUN_DIR/minio"
  start_bg minio env MINIO_ROOT_USER="$MINIO_USER" MINIO_ROOT_PASSWORD="$MINIO_PASSWORD" \
    MINIO_UPDATE=off MINIO_BROWSER=off "$BIN_DIR/minio" server "$RUN_DIR/minio" \
    --address "$HOST:$MINIO_PORT" --console-address "$HOST:$MINIO_CONSOLE_PORT" --quiet
  PENDING+=("minio $STARTED_PID minio_ready")
}

# ensure_mailpit: Mailpit's SMTP and HTTP API answering; it keeps mail in a temporary database.
ensure_mailpit() {
  mailpit_ready && return 0
  if tcp_open "$HOST" "$SMTP_PORT" || tcp_open "$HOST" "$MAILPIT_PORT"; then
    die "port $SMTP_PORT or $MAILPIT_PORT is taken by something that is not Mailpit"
  fi
  go_install_wait mailpit "$MAILPIT_MODULE" "$MAILPIT_VERSION"
  start_bg mailpit "$BIN_DIR/mailpit" --smtp "$HOST:$SMTP_PORT" --listen "$HOST:$MAILPIT_PORT" \
    --smtp-disable-rdns --disable-version-check --smtp-auth-accept-any --smtp-auth-allow-insecure
  PENDING+=("mailpit $STARTED_PID mailpit_ready")
}

# Readiness checks of the stand-ins (what `wait_until` polls).
dynalite_ready() { tcp_open "$HOST" "$DYNAMO_PORT"; }
minio_ready() { http_ok "http://$HOST:$MINIO_PORT/minio/health/live"; }
mailpit_ready() { http_ok "http://$HOST:$MAILPIT_PORT/api/v1/messages" && tcp_open "$HOST" "$SMTP_PORT"; }

# await_pending: wait for every service started in this run (they start in parallel).
PENDING=()
await_pending() {
  local entry name pid check
  for entry in "${PENDING[@]}"; do
    read -r name pid check <<<"$entry"
    wait_until "$name" "$LOG_DIR/$name.log" "$pid" "$check"
    log "$name ready"
  done
}

# ensure_chromium: Debian's chromium for the browser test, and a colour emoji font so
# emoji in the README screenshots are drawn in colour.
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  dpkg-query -W -f='${Status}' fonts-noto-color-emoji 2>/dev/null | grep -q 'install ok installed' ||
    apt_install fonts-noto-color-emoji
}

# parley_bin: cmd/parley built into the cache, keyed by a hash of its Go sources, go.mod,
# go.sum and the Go version (a `go run` would spend seconds checking the SDK every time).
parley_bin() {
  local stamp bin
  stamp=$(cd "$ROOT" && find cmd internal -name '*.go' ! -name '*_test.go' | LC_ALL=C sort \
    | xargs cat - go.mod go.sum <(go version) | sha256sum | cut -c1-16)
  bin=$CACHE_DIR/parley/$stamp/parley
  if [ ! -x "$bin" ]; then
    (cd "$ROOT" && go build -o "$bin.tmp" ./cmd/parley) >&2 || die "cannot build cmd/parley"
    mv "$bin.tmp" "$bin"
  fi
  printf '%s\n' "$bin"
}

# create_resources: the DynamoDB table and S3 bucket, by `parley migrate --create-table
# --create-bucket` as a production setup makes them (its embedded database, which migrate
# also brings up to date, is a throwaway file under the stack's folder).
create_resources() {
  local bin; bin=$(parley_bin)
  env -u PARLEY_MYSQL_DSN PARLEY_DATA_DIR="$RUN_DIR/migrate" PARLEY_AWS_REGION="$REGION" \
    AWS_ACCESS_KEY_ID=$MINIO_USER AWS_SECRET_ACCESS_KEY=$MINIO_PASSWORD AWS_EC2_METADATA_DISABLED=true \
    PARLEY_DYNAMODB_ENDPOINT="http://$HOST:$DYNAMO_PORT" PARLEY_DYNAMODB_TABLE="$TABLE" \
    PARLEY_S3_ENDPOINT="http://$HOST:$MINIO_PORT" PARLEY_S3_BUCKET="$BUCKET" PARLEY_S3_PATH_STYLE=true \
    "$bin" migrate --create-table --create-bucket >&2 \
    || die "creating the table/bucket failed (parley migrate; logs in $LOG_DIR)"
}

# env_lines: the export lines of stack.env (values single-quoted; none contains a quote).
env_lines() {
  local userinfo; userinfo=${MYSQL_USERINFO:-$(cat "$RUN_DIR/mysql-user" 2>/dev/null || echo root)}
  local mysql="$userinfo@tcp($HOST:$MYSQL_PORT)"
  local s3=http://$HOST:$MINIO_PORT dynamo=http://$HOST:$DYNAMO_PORT
  cat <<EOF
# Written by scripts/stack.sh: the local stand-ins of Parley's production backends.
# Load with \`. ./stack.env\`; then \`go run ./cmd/parley\` runs in production mode and
# \`go test ./...\` runs the backend tests. Local-only credentials; do not commit.
export PARLEY_MYSQL_DSN='$mysql/$APP_DB?parseTime=true&loc=UTC'
export PARLEY_DYNAMODB_ENDPOINT='$dynamo'
export PARLEY_DYNAMODB_TABLE='$TABLE'
export PARLEY_AWS_REGION='$REGION'
export AWS_REGION='$REGION'
export AWS_ACCESS_KEY_ID='$MINIO_USER'
export AWS_SECRET_ACCESS_KEY='$MINIO_PASSWORD'
export AWS_EC2_METADATA_DISABLED='true'
export PARLEY_S3_BUCKET='$BUCKET'
export PARLEY_S3_ENDPOINT='$s3'
export PARLEY_S3_PUBLIC_ENDPOINT='$s3'
export PARLEY_S3_PATH_STYLE='true'
export PARLEY_REDIS_URL='redis://$HOST:$REDIS_PORT/0'
export PARLEY_SMTP_URL='smtp://$HOST:$SMTP_PORT?tls=none'
export PARLEY_MAIL_FROM='Parley <parley@localhost>'
export PARLEY_TEST_MYSQL_DSN='$mysql/?parseTime=true&loc=UTC'
export PARLEY_TEST_REDIS_URL='redis://$HOST:$REDIS_PORT/1'
export PARLEY_TEST_REDIS_CLUSTER_URL='$(cluster_url)'
export PARLEY_TEST_DYNAMODB_ENDPOINT='$dynamo'
export PARLEY_TEST_S3_ENDPOINT='$s3'
export PARLEY_TEST_S3_ACCESS_KEY='$MINIO_USER'
export PARLEY_TEST_S3_SECRET_KEY='$MINIO_PASSWORD'
export PARLEY_TEST_S3_BUCKET='$BUCKET'
export PARLEY_TEST_SMTP_ADDR='$HOST:$SMTP_PORT'
export PARLEY_TEST_MAILPIT_URL='http://$HOST:$MAILPIT_PORT'
export PARLEY_TEST_CHROMIUM='/usr/bin/chromium'
EOF
}

# write_env: replace stack.env in one step.
write_env() {
  env_lines >"$RUN_DIR/stack.env.tmp"
  mv "$RUN_DIR/stack.env.tmp" "$ENV_FILE"
  log "wrote $ENV_FILE"
}

cmd_up() {
  local t0=$SECONDS
  # Slow builds first, in the background, only for services that are not already answering.
  minio_ready || go_install_bg minio "$MINIO_MODULE" "$MINIO_VERSION"
  mailpit_ready || go_install_bg mailpit "$MAILPIT_MODULE" "$MAILPIT_VERSION"
  ensure_chromium
  ensure_mariadb
  ensure_redis
  ensure_redis_cluster
  ensure_dynalite
  ensure_mailpit
  ensure_minio
  await_pending
  create_resources
  write_env
  log "up in $((SECONDS - t0))s: MariaDB :$MYSQL_PORT, Redis :$REDIS_PORT, Redis Cluster :$CLUSTER_PORT+, dynalite :$DYNAMO_PORT, MinIO :$MINIO_PORT, Mailpit SMTP :$SMTP_PORT HTTP :$MAILPIT_PORT"
}

# alive PID START: PID runs (not a zombie awaiting its reaper) and is still the process we started.
alive() {
  local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] && [ "$(start_time "$1")" = "$2" ]
}

# user_token: this caller's file in USERS_DIR (name, plus the PID and its start time if given).
user_token() {
  if [ -n "$STACK_USER_PID" ]; then
    printf '%s/%s-%s\n' "$USERS_DIR" "$STACK_USER" "$STACK_USER_PID"
  else
    printf '%s/%s\n' "$USERS_DIR" "$STACK_USER"
  fi
}

# register_user: note that this caller uses the stack.
register_user() {
  mkdir -p "$USERS_DIR"
  if [ -n "$STACK_USER_PID" ]; then
    printf '%s %s\n' "$STACK_USER_PID" "$(start_time "$STACK_USER_PID")" >"$(user_token)"
  else
    : >"$(user_token)"
  fi
}

# live_users: print the users still holding the stack, dropping those whose process is gone.
live_users() {
  local f pid start
  for f in "$USERS_DIR"/*; do
    [ -e "$f" ] || continue
    pid= start=
    read -r pid start <"$f" || true
    if [ -n "$pid" ] && ! alive "$pid" "$start"; then
      rm -f "$f"; continue
    fi
    basename "$f"
  done
}

cmd_down() {
  rm -f "$(user_token)"
  local users; users=$(live_users | tr '\n' ' ')
  if [ -n "$users" ]; then
    log "still in use by: $users- leaving the stack running"
    return 0
  fi
  [ -f "$RECORD" ] || { log "nothing that this script started is running; nothing to stop"; return 0; }
  local name pid start pids=()
  while read -r name pid start; do
    if [ -n "$pid" ] && alive "$pid" "$start"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$name:$pid:$start")
    else
      log "$name (pid $pid) already gone"
    fi
  done <"$RECORD"
  # All were told at once; give them 15 s together, then KILL the stragglers.
  local deadline=$((SECONDS + 15)) entry
  for entry in "${pids[@]}"; do
    IFS=: read -r name pid start <<<"$entry"
    while alive "$pid" "$start" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid" "$start"; then
      log "$name (pid $pid) ignored TERM for 15s; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  done
  rm -f "$RECORD"
}

cmd_status() {
  local rc=0
  check() { if "${@:2}"; then printf '%-13s up\n' "$1"; else printf '%-13s DOWN\n' "$1"; rc=1; fi; }
  check mariadb tcp_open "$HOST" "$MYSQL_PORT"
  check redis tcp_open "$HOST" "$REDIS_PORT"
  check redis-cluster cluster_ready
  check dynalite tcp_open "$HOST" "$DYNAMO_PORT"
  check minio http_ok "http://$HOST:$MINIO_PORT/minio/health/live"
  check mailpit http_ok "http://$HOST:$MAILPIT_PORT/api/v1/messages"
  return $rc
}

main() {
  local cmd=${1:-}; shift || true
  while [ $# -gt 0 ]; do
    case $1 in
      --user) STACK_USER=$2; shift 2 ;;
      --pid) STACK_USER_PID=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  # One stack.sh at a time: two `make test` runs would otherwise race to start the same ports.
  exec 9>"$RUN_DIR/lock"
  flock 9
  case $cmd in
    up) register_user; cmd_up ;;
    down) cmd_down ;;
    env) env_lines ;;
    status) if cmd_status; then exit 0; else exit 1; fi ;;
    *) die "usage: $0 up|down|env|status [--user NAME [--pid PID]]" ;;
  esac
}

main "$@"
