#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests and for trying `llmtts launch --mode slurm`.
#
#   bash slurm/local-cluster.sh start    # install (apt-get, once), configure, start; idempotent
#   bash slurm/local-cluster.sh status   # which daemons run, sinfo
#   bash slurm/local-cluster.sh stop     # cancel its jobs, stop only the daemons this script started
#
# Runs as root without systemd (containers, CI VMs). Daemons: munged (as the munge user), MariaDB on
# 127.0.0.1:$LLMTTS_SLURM_DB_PORT with its own data dir, slurmdbd (accounting: without it `sacct` fails
# and submitit waits forever on a job that died without a result), slurmctld, slurmd.
# Everything it owns lives in $LLMTTS_SLURM_STATE (default /var/lib/llmtts-slurm) plus the
# config files /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (which the slurm clients read).
set -euo pipefail

STATE=${LLMTTS_SLURM_STATE:-/var/lib/llmtts-slurm}
DB_PORT=${LLMTTS_SLURM_DB_PORT:-3307}
CLUSTER=llmtts-local
MARK="# written by llm-tts-factory slurm/local-cluster.sh"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
HOST=$(hostname -s)

log() { echo "local-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- helpers ----------------------------------------------------------------------------------
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "$what did not come up within ${secs}s (logs in $STATE)"
        sleep 0.2
    done
}

mark_started() { grep -qx "$1" "$STATE/started" 2>/dev/null || echo "$1" >>"$STATE/started"; }
we_started() { grep -qx "$1" "$STATE/started" 2>/dev/null; }

ensure_packages() {
    local missing=0
    for b in slurmctld slurmd sbatch munged slurmdbd mariadbd mariadb-install-db; do
        command -v "$b" >/dev/null 2>&1 || missing=1
    done
    ((missing)) || return 0
    [[ $(id -u) == 0 ]] || die "SLURM packages are missing and installing them needs root"
    command -v apt-get >/dev/null || die "SLURM packages are missing and apt-get is not available"
    log "installing ${PACKAGES[*]} (once)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$STATE/apt.log" 2>&1 || die "apt-get update failed (see $STATE/apt.log)"
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$STATE/apt.log" 2>&1 \
        || die "apt-get install failed (see $STATE/apt.log)"
}

# --- munge ------------------------------------------------------------------------------------
start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # someone's munged works
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    fi
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged failed to start"
    mark_started munged
    wait_for 10 munged bash -c 'munge -n | unmunge'
}

# --- MariaDB (own data dir and port, so a system MySQL is never touched) -------------------------
# mariadbd runs as the mysql user: its socket, pid file and log live in a dir that user owns.
DBRUN=$STATE/mysql-run
mysql_root() { mariadb --socket="$DBRUN/mysql.sock" -uroot "$@"; }

start_mariadb() {
    if pid_alive "$DBRUN/mysql.pid"; then return 0; fi
    if [[ ! -d $STATE/mysql/mysql ]]; then
        mkdir -p "$STATE/mysql" && chown mysql:mysql "$STATE/mysql"
        mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE/mysql-install.log" 2>&1 \
            || die "mariadb-install-db failed (see $STATE/mysql-install.log)"
    fi
    install -d -o mysql -g mysql "$DBRUN"
    setsid mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$DBRUN/mysql.sock" \
        --pid-file="$DBRUN/mysql.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --innodb-buffer-pool-size=64M --log-error="$DBRUN/mysql.log" >/dev/null 2>&1 &
    mark_started mariadb
    wait_for 30 MariaDB mysql_root -e 'SELECT 1'
    mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

# --- slurm configs ------------------------------------------------------------------------------
write_configs() {
    for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
        if [[ -e $f ]] && ! grep -qF "$MARK" "$f"; then
            die "$f exists and was not written by this script; refusing to overwrite it"
        fi
    done
    local cores mem_mb
    cores=$(nproc)
    mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    install -d -m 0755 /run/slurm
    cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire+1 s before it may start again (default 120): keep it short here.
AuthInfo=cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Short kill wait: a trainer gets SIGTERM this long before SIGKILL (must cover one checkpoint).
KillWait=20
MinJobAge=60
InactiveLimit=0
SchedulerParameters=sched_interval=1
# Reject impossible requests at submission instead of leaving them pending forever.
EnforcePartLimits=ALL
# Jobs share the cores: tests on a 2-core machine must never queue behind each other.
NodeName=$HOST NodeAddr=127.0.0.1 Sockets=1 CoresPerSocket=$cores ThreadsPerCore=1 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
    cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
DbdHost=localhost
DbdPort=6819
SlurmUser=root
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=/run/slurm/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
EOF
    chmod 0600 /etc/slurm/slurmdbd.conf
}

node_ready() { sinfo -h -n "$HOST" -o %T 2>/dev/null | grep -Eqx '(idle|mixed|allocated)'; }
# slurmd has registered (a trailing * means "not responding"), whatever state the node is in.
node_registered() { sinfo -h -n "$HOST" -o %T 2>/dev/null | grep -Eqx '[a-z+~#!%$@^-]*[a-z]'; }

start_daemon() {  # start_daemon NAME PIDFILE CHECK-COMMAND...
    local name=$1 pidfile=$2; shift 2
    if pid_alive "$pidfile"; then return 0; fi
    "$name" >>"$STATE/$name.out" 2>&1 || die "$name failed to start (see $STATE/$name.log)"
    mark_started "$name"
    wait_for 30 "$name" "$@"
}

start() {
    [[ $(id -u) == 0 ]] || die "run as root (it starts munged/slurmd and writes /etc/slurm)"
    mkdir -p "$STATE"
    ensure_packages
    if [[ -e /etc/slurm/slurm.conf ]] && ! grep -qF "$MARK" /etc/slurm/slurm.conf \
        && sinfo -h >/dev/null 2>&1; then
        log "a SLURM cluster not managed by this script is already running; using it as is"
        return 0
    fi
    start_munge
    start_mariadb
    write_configs
    start_daemon slurmdbd /run/slurm/slurmdbd.pid sacctmgr -n list cluster
    # slurmctld registers the cluster in slurmdbd itself; add it explicitly too for older versions.
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    start_daemon slurmctld /run/slurm/slurmctld.pid scontrol ping
    start_daemon slurmd /run/slurm/slurmd.pid node_registered
    # A node left DOWN/DRAINED by an earlier unclean stop: bring it back.
    if ! node_ready; then
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        wait_for 20 "node $HOST" node_ready
    fi
    log "up: cluster $CLUSTER, node $HOST ($(nproc) cores), partition debug; state in $STATE"
}

stop_pid() {  # stop_pid NAME PIDFILE
    local name=$1 pidfile=$2 pid
    we_started "$name" || return 0
    if pid_alive "$pidfile"; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    sed -i "/^$name\$/d" "$STATE/started"
}

stop() {
    [[ -f $STATE/started ]] || { log "nothing to stop"; return 0; }
    if we_started slurmctld && pid_alive /run/slurm/slurmctld.pid; then
        # Jobs of this cluster would be orphaned once slurmd is gone: cancel them first.
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 50); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.2; done
        fi
    fi
    stop_pid slurmd /run/slurm/slurmd.pid
    stop_pid slurmctld /run/slurm/slurmctld.pid
    stop_pid slurmdbd /run/slurm/slurmdbd.pid
    stop_pid mariadb "$DBRUN/mysql.pid"
    stop_pid munged /run/munge/munged.pid
    log "stopped"
}

status() {
    local name pidfile rc=0
    for pair in munged:/run/munge/munged.pid mariadb:$DBRUN/mysql.pid slurmdbd:/run/slurm/slurmdbd.pid \
        slurmctld:/run/slurm/slurmctld.pid slurmd:/run/slurm/slurmd.pid; do
        name=${pair%%:*} pidfile=${pair#*:}
        if pid_alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; rc=1; fi
    done
    sinfo 2>/dev/null || true
    return $rc
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
