#!/usr/bin/env bash
# logstack.sh start|stop|stop-db|start-db|restart-db|stop-s3|start-s3 DIR:
# a local storage stack for the log server's fleet (aws) driver — MariaDB
# and an S3-compatible gateway (versitygw), both on loopback, all state
# under DIR, both niced.
#
#   start  installs mariadb-server/-client with apt-get when missing (needs
#          root), builds versitygw v1.8.0 with go install when missing
#          (cached in $HVMON_TOOLS, default ~/.cache/hvmon-tools), starts
#          both, creates the databases hvmon_log and hvmon_antispam, the
#          user hvmon and the bucket hvmon-log, and writes DIR/env (shell
#          assignments: DSNs, endpoint, bucket, S3 credentials), which it
#          also prints.
#   stop   stops both by the PIDs recorded under DIR (never by name); the
#          data stays in DIR.
#   stop-db, start-db, restart-db, stop-s3, start-s3
#          stop or start one of the two (same command line, same port, same
#          data) while the stack is up: the fault tests use them.
#
# logd's aws storage test uses it: HVMON_LOGSTACK_ENV=DIR/env go test
# -run TestAWSStorage ./logd.
#
# Ports: $LOGSTACK_DB_PORT and $LOGSTACK_S3_PORT, else free ones.
set -euo pipefail

usage() { echo "usage: $0 start|stop|stop-db|start-db|restart-db|stop-s3|start-s3 DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
versitygw_version=v1.8.0
tools=${HVMON_TOOLS:-$HOME/.cache/hvmon-tools}

# free_port prints a TCP port nothing listens on at the moment.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# stop_pid stops the process whose PID is in file $1, waiting up to 30 s.
stop_pid() {
	local f=$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill "$pid" 2>/dev/null; then
		for _ in $(seq 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "logstack: $f ($pid) did not stop; killing it" >&2
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

stop() {
	stop_pid "$dir/versitygw.pid"
	stop_pid "$dir/mariadb/pid"
	rm -f "$dir/env"
	echo "logstack: stopped" >&2
}

# mariadbd_path prints the MariaDB server binary's path.
mariadbd_path() {
	command -v mariadbd || echo /usr/sbin/mariadbd
}

# start_db starts mariadbd on the port and data under DIR and waits until
# it answers.
start_db() {
	local m=$dir/mariadb
	[ ! -f "$m/pid" ] || ! kill -0 "$(cat "$m/pid")" 2>/dev/null || { echo "logstack: mariadbd is running" >&2; return 1; }
	nice -n 19 "$(mariadbd_path)" --no-defaults --user="$(id -un)" --datadir="$m/data" --socket="$m/sock" --pid-file="$m/mariadbd.pid" \
		--port="$(cat "$m/port")" --bind-address=127.0.0.1 --max-allowed-packet=64M --max-connections=512 \
		--innodb-buffer-pool-size=128M --log-error="$m/err.log" </dev/null >/dev/null 2>&1 &
	echo $! >"$m/pid"
	for i in $(seq 300); do
		mariadb --no-defaults --socket="$m/sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
		kill -0 "$(cat "$m/pid")" 2>/dev/null || { echo "logstack: mariadbd exited; see $m/err.log" >&2; return 1; }
		[ "$i" -lt 300 ] || { echo "logstack: mariadbd did not answer in 60 s" >&2; return 1; }
		sleep 0.2
	done
}

# start_s3 starts the gateway on the port and data under DIR and waits
# until it answers.
start_s3() {
	local gw=$tools/versitygw-$versitygw_version/versitygw port key secret
	[ ! -f "$dir/versitygw.pid" ] || ! kill -0 "$(cat "$dir/versitygw.pid")" 2>/dev/null || { echo "logstack: versitygw is running" >&2; return 1; }
	port=$(cat "$dir/s3.port")
	{ read -r key; read -r secret; } <"$dir/s3.credentials"
	# The gateway reads its root credentials from the environment, keeping
	# them out of the process list. Its metadata lives in extended
	# attributes: DIR must be on a file system that has user xattrs.
	ROOT_ACCESS_KEY=$key ROOT_SECRET_KEY=$secret nice -n 19 "$gw" --port "127.0.0.1:$port" posix "$dir/s3" \
		</dev/null >>"$dir/versitygw.log" 2>&1 &
	echo $! >"$dir/versitygw.pid"
	for i in $(seq 150); do
		# Anonymous requests are refused (403): any HTTP answer means up.
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" != 000 ] && break
		kill -0 "$(cat "$dir/versitygw.pid")" 2>/dev/null || { echo "logstack: versitygw exited; see $dir/versitygw.log" >&2; return 1; }
		[ "$i" -lt 150 ] || { echo "logstack: versitygw did not answer in 30 s" >&2; return 1; }
		sleep 0.2
	done
}

# running fails unless the stack under DIR was started.
running() {
	[ -f "$dir/env" ] || { echo "logstack: no stack in $dir (start it first)" >&2; exit 1; }
}

start() {
	if [ -e "$dir/env" ]; then
		echo "logstack: $dir/env exists: stop it first ($0 stop $dir) or use another DIR" >&2
		exit 1
	fi
	if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
		echo "logstack: installing MariaDB" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client >&2
	fi
	local gw=$tools/versitygw-$versitygw_version/versitygw
	if [ ! -x "$gw" ]; then
		echo "logstack: building versitygw $versitygw_version (a few minutes)" >&2
		mkdir -p "$(dirname "$gw")"
		GOBIN=$(dirname "$gw") nice -n 19 go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version" >&2
	fi

	mkdir -p "$dir/mariadb" "$dir/s3/hvmon-log"
	local db_port=${LOGSTACK_DB_PORT:-$(free_port)} s3_port=${LOGSTACK_S3_PORT:-$(free_port)}
	local db_pw s3_key s3_secret
	db_pw=$(openssl rand -hex 16)
	s3_key=hvmon$(openssl rand -hex 4)
	s3_secret=$(openssl rand -hex 20)
	# If anything below fails, stop what was started.
	trap 'stop' ERR

	local m=$dir/mariadb
	echo "$db_port" >"$m/port"
	echo "$s3_port" >"$dir/s3.port"
	mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$m/data" --auth-root-authentication-method=socket --skip-test-db >"$m/install.log" 2>&1
	start_db
	mariadb --no-defaults --socket="$m/sock" -uroot -e "
		CREATE DATABASE hvmon_log; CREATE DATABASE hvmon_antispam;
		CREATE USER 'hvmon'@'127.0.0.1' IDENTIFIED BY '$db_pw';
		GRANT ALL ON hvmon_log.* TO 'hvmon'@'127.0.0.1';
		GRANT ALL ON hvmon_antispam.* TO 'hvmon'@'127.0.0.1';"

	(umask 077; printf '%s\n%s\n' "$s3_key" "$s3_secret" >"$dir/s3.credentials")
	start_s3
	trap - ERR

	umask 077
	cat >"$dir/env" <<ENV
HVMON_LOG_DSN='hvmon:$db_pw@tcp(127.0.0.1:$db_port)/hvmon_log'
HVMON_ANTISPAM_DSN='hvmon:$db_pw@tcp(127.0.0.1:$db_port)/hvmon_antispam'
HVMON_S3_ENDPOINT='http://127.0.0.1:$s3_port'
HVMON_S3_BUCKET='hvmon-log'
HVMON_S3_REGION='us-east-1'
HVMON_S3_ACCESS_KEY='$s3_key'
HVMON_S3_SECRET_KEY='$s3_secret'
ENV
	cat "$dir/env"
	echo "logstack: running; stop with: $0 stop $dir" >&2
}

case $cmd in
start) start ;;
stop) stop ;;
stop-db) running; stop_pid "$dir/mariadb/pid" ;;
start-db) running; start_db ;;
restart-db) running; stop_pid "$dir/mariadb/pid"; start_db ;;
stop-s3) running; stop_pid "$dir/versitygw.pid" ;;
start-s3) running; start_s3 ;;
*) usage ;;
esac
