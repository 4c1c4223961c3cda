#!/usr/bin/env bash
# A local OpenStack for testing the Nova/Ironic backends against real APIs: keystone, placement,
# glance, neutron (ML2, no agents), nova (fake compute driver) and ironic (fake hardware) on
# 127.0.0.1, with sqlite databases and a private RabbitMQ, all under one state directory.
# Usage: tools/openstack/harness.sh up|down|env|status   (docs/development/openstack-harness.md)
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
VENV=${OPENSTACK_VENV:-$root/.venv-openstack}
STATE=${OPENSTACK_STATE:-$root/build/openstack}
# Current OpenStack releases want Python 3.12+; the controller's python3 is 3.11.
PYTHON=${OPENSTACK_PYTHON:-$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3 2>/dev/null | tail -1)}
PACKAGES="keystone openstack-placement glance neutron nova ironic gunicorn python-openstackclient"
HOST=127.0.0.1
declare -A PORT=([keystone]=5000 [placement]=8778 [glance]=9292 [neutron]=9696 [nova-api]=8774 [ironic]=6385 [rabbitmq]=5672)
# The Erlang port mapper of our own RabbitMQ node, so that `down` can stop it without touching others.
EPMD_PORT=14369
# Services starting together write the same sqlite files (keystone's tokens, nova's instances): a
# writer waits up to a minute for the lock instead of failing with "database is locked".
SQLITE_WAIT="?timeout=60"
ETC=$STATE/etc
LOGS=$STATE/logs
RUN=$STATE/run
NOVA_DB_CONF=(--config-file "$ETC/nova/nova.conf" --config-file "$ETC/nova/nova-db.conf")
SERVICES="rabbitmq keystone placement glance neutron nova-api nova-conductor nova-scheduler nova-compute ironic ironic-conductor"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

install_venv() {
  [[ -f $VENV/.installed && $(<"$VENV/.installed") == "$PACKAGES" ]] && return
  dpkg -s rabbitmq-server >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
  }
  [[ -x $PYTHON ]] || { log "no Python 3.12 (set OPENSTACK_PYTHON)"; exit 1; }
  log "installing $PACKAGES into $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q $PACKAGES "$here/agentless_ml2"
  echo "$PACKAGES" >"$VENV/.installed"
}

# Passwords are generated once per state directory and never printed.
make_secrets() {
  [[ -f $STATE/secrets.env ]] && return
  (umask 077 && for name in ADMIN SERVICE TROVE; do
    echo "${name}_PASSWORD=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))')"
  done >"$STATE/secrets.env")
}

# The [keystone_authtoken]-style section a service uses to validate tokens or call other services.
auth_section() {
  cat <<EOF
[$1]
auth_url = http://$HOST:${PORT[keystone]}
www_authenticate_uri = http://$HOST:${PORT[keystone]}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $SERVICE_PASSWORD
region_name = RegionOne
EOF
}

# The sqlite database and lock directory sections of service NAME.
local_sections() {
  printf '[database]\nconnection = sqlite:///%s/%s.db%s\n[oslo_concurrency]\nlock_path = %s/%s/locks\n' \
    "$STATE" "$1" "$SQLITE_WAIT" "$STATE" "$1"
}

write_configs() {
  local rabbit="rabbit://guest:guest@$HOST:${PORT[rabbitmq]}/"
  mkdir -p "$ETC"/{keystone,placement,glance,neutron/plugins/ml2,nova,ironic} \
    "$STATE"/{glance/images,nova/locks,neutron/locks,ironic/locks}
  cat >"$ETC/keystone/keystone.conf" <<EOF
[database]
connection = sqlite:///$STATE/keystone.db$SQLITE_WAIT
[token]
provider = fernet
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
EOF
  {
    printf '[placement_database]\nconnection = sqlite:///%s/placement.db%s\n[api]\nauth_strategy = keystone\n' "$STATE" "$SQLITE_WAIT"
    auth_section keystone_authtoken placement
  } >"$ETC/placement/placement.conf"
  cat "$VENV/etc/glance/glance-api-paste.ini" >"$ETC/glance/glance-api-paste.ini"
  {
    cat <<EOF
[DEFAULT]
enabled_backends = file:file
workers = 1
[database]
connection = sqlite:///$STATE/glance.db$SQLITE_WAIT
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $STATE/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks
[paste_deploy]
flavor = keystone
config_file = $ETC/glance/glance-api-paste.ini
EOF
    auth_section keystone_authtoken glance
  } >"$ETC/glance/glance-api.conf"
  {
    cat <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $rabbit
api_paste_config = $VENV/etc/neutron/api-paste.ini
state_path = $STATE/neutron
api_workers = 1
rpc_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
EOF
    local_sections neutron
    auth_section keystone_authtoken neutron
  } >"$ETC/neutron/neutron.conf"
  # No agents: the agentless driver (tools/openstack/agentless_ml2) binds every port.
  cat >"$ETC/neutron/plugins/ml2/ml2_conf.ini" <<EOF
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = agentless
extension_drivers = port_security
[ml2_type_vxlan]
vni_ranges = 1000:1999
[securitygroup]
enable_security_group = true
EOF
  cp "$VENV/etc/nova/api-paste.ini" "$ETC/nova/api-paste.ini"
  {
    cat <<EOF
[DEFAULT]
transport_url = $rabbit
compute_driver = fake.FakeDriver
host = harness-compute
my_ip = $HOST
state_path = $STATE/nova
# A build that failed without reaching ERROR (its own update refused) ends in ERROR after this.
instance_build_timeout = 180
[api]
auth_strategy = keystone
[conductor]
workers = 1
[scheduler]
workers = 1
[oslo_concurrency]
lock_path = $STATE/nova/locks
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
EOF
    auth_section keystone_authtoken nova
    auth_section placement nova
    auth_section neutron nova
    auth_section service_user nova
    echo "send_service_user_token = true"
  } >"$ETC/nova/nova.conf"
  # Only the controllers get the databases: nova-compute goes through the conductor.
  printf '[api_database]\nconnection = sqlite:///%s/nova_api.db%s\n[database]\nconnection = sqlite:///%s/nova_cell1.db%s\n' \
    "$STATE" "$SQLITE_WAIT" "$STATE" "$SQLITE_WAIT" >"$ETC/nova/nova-db.conf"
  # Fake hardware: nodes go through enroll, manage, provide and deploy without any BMC.
  {
    cat <<EOF
[DEFAULT]
auth_strategy = keystone
transport_url = $rabbit
host = harness-conductor
state_path = $STATE/ironic
enabled_hardware_types = fake-hardware
enabled_boot_interfaces = fake
enabled_deploy_interfaces = fake
enabled_management_interfaces = fake
enabled_power_interfaces = fake
enabled_inspect_interfaces = no-inspect
enabled_network_interfaces = noop
enabled_storage_interfaces = noop
enabled_vendor_interfaces = no-vendor
enabled_raid_interfaces = no-raid
enabled_bios_interfaces = no-bios
enabled_console_interfaces = no-console
enabled_rescue_interfaces = no-rescue
rpc_transport = oslo
[api]
host_ip = $HOST
port = ${PORT[ironic]}
[conductor]
automated_clean = false
[dhcp]
dhcp_provider = none
EOF
    local_sections ironic
    auth_section keystone_authtoken ironic
  } >"$ETC/ironic/ironic.conf"
  chmod -R go-rwx "$ETC"
}

# start NAME CMD...: a background process in its own session, logging to $LOGS/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# start_wsgi NAME PORT MODULE [ENV=VALUE...]: gunicorn serving MODULE's `application`.
start_wsgi() {
  local name=$1 port=$2 module=$3
  shift 3
  start "$name" env HARNESS_WSGI="$module" "$@" "$VENV/bin/gunicorn" --bind "$HOST:$port" \
    --workers 1 --worker-class gthread --threads 4 --timeout 300 --pythonpath "$here" wsgi_app:application
}

# wait_http NAME URL / wait_port NAME PORT: until the service answers (or dies, or 3 minutes pass).
wait_http() {
  local name=$1 url=$2 deadline=$((SECONDS + 180))
  until curl -s -o /dev/null "$url"; do
    alive "$name" || { log "$name died: tail $LOGS/$name.log"; tail -20 "$LOGS/$name.log" >&2; exit 1; }
    ((SECONDS < deadline)) || { log "$name not answering on $url"; exit 1; }
    sleep 1
  done
}

wait_port() {
  local name=$1 port=$2 deadline=$((SECONDS + 180))
  until (: >"/dev/tcp/$HOST/$port") 2>/dev/null; do
    alive "$name" || { log "$name died: tail $LOGS/$name.log"; exit 1; }
    ((SECONDS < deadline)) || { log "$name not listening on $port"; exit 1; }
    sleep 1
  done
}

alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(<"$RUN/$1.pid")" 2>/dev/null; }

all_alive() {
  local s
  for s in $SERVICES; do alive "$s" || return 1; done
}

rabbit_env() {
  export HOME=$STATE/rabbitmq RABBITMQ_NODENAME=harness@localhost RABBITMQ_NODE_IP_ADDRESS=$HOST \
    RABBITMQ_NODE_PORT=${PORT[rabbitmq]} RABBITMQ_MNESIA_BASE=$STATE/rabbitmq/mnesia \
    RABBITMQ_LOG_BASE=$LOGS RABBITMQ_ENABLED_PLUGINS_FILE=$STATE/rabbitmq/enabled_plugins \
    RABBITMQ_CONFIG_FILE=$STATE/rabbitmq/rabbitmq ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=$HOST \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

start_rabbitmq() {
  mkdir -p "$STATE/rabbitmq"
  echo '[].' >"$STATE/rabbitmq/enabled_plugins"
  echo "listeners.tcp.default = $HOST:${PORT[rabbitmq]}" >"$STATE/rabbitmq/rabbitmq.conf"
  # Debian's /usr/sbin wrapper would switch to the rabbitmq user; the node runs as the caller here.
  (rabbit_env && start rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server)
  wait_port rabbitmq "${PORT[rabbitmq]}"
}

# step CMD...: one setup command, its output in db-sync.log; the first failure stops `up`.
step() {
  "$@" >>"$LOGS/db-sync.log" 2>&1 || { log "failed: ${*:1:3}... (see $LOGS/db-sync.log)"; exit 1; }
}

sync_databases() {
  local keystone=("$VENV/bin/keystone-manage" --config-file "$ETC/keystone/keystone.conf")
  local nova=("$VENV/bin/nova-manage" "${NOVA_DB_CONF[@]}")
  local neutron=("$VENV/bin/neutron-db-manage" --config-file "$ETC/neutron/neutron.conf"
    --config-file "$ETC/neutron/plugins/ml2/ml2_conf.ini")
  step "${keystone[@]}" db_sync
  step "${keystone[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  step "${keystone[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  OS_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD step "${keystone[@]}" bootstrap --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "http://$HOST:${PORT[keystone]}/v3" \
    --bootstrap-public-url "http://$HOST:${PORT[keystone]}/v3" \
    --bootstrap-internal-url "http://$HOST:${PORT[keystone]}/v3"
  step "$VENV/bin/placement-manage" --config-file "$ETC/placement/placement.conf" db sync
  step "$VENV/bin/glance-manage" --config-file "$ETC/glance/glance-api.conf" db_sync
  # Neutron's migrations alter constraints, which sqlite cannot: the schema comes from the models
  # (as in neutron's own sqlite tests) and alembic is told it is at the heads.
  step "$VENV/bin/python" -c 'import sys, sqlalchemy
from neutron.db.migration.models import head
head.get_metadata().create_all(sqlalchemy.create_engine(sys.argv[1]))' "sqlite:///$STATE/neutron.db"
  step "${neutron[@]}" stamp heads
  step "${nova[@]}" api_db sync
  step "${nova[@]}" cell_v2 map_cell0 --database_connection "sqlite:///$STATE/nova_cell0.db$SQLITE_WAIT"
  step "${nova[@]}" cell_v2 create_cell --name cell1
  step "${nova[@]}" db sync
  step "$VENV/bin/ironic-dbsync" --config-file "$ETC/ironic/ironic.conf" create_schema
  # Write-ahead logging: readers do not block the writer, and a reader that starts writing is not
  # refused at once with "database is locked" (a lock upgrade, which the timeout above cannot wait
  # for: under load nova-compute lost an instance update that way and the server stayed in BUILD).
  local db
  for db in "$STATE"/*.db; do
    step "$VENV/bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$db"
  done
}

up() {
  # clouds.yaml is written last: without it, an earlier `up` did not finish.
  if [[ -f $STATE/clouds.yaml ]] && all_alive; then
    log "already up ($STATE)"
    return
  fi
  [[ -d $STATE ]] && { log "partly running: starting afresh"; down; }
  local t0=$SECONDS
  install_venv
  mkdir -p "$LOGS" "$RUN"
  chmod 700 "$STATE"
  make_secrets
  set -a && . "$STATE/secrets.env" && set +a
  write_configs
  log "rabbitmq"
  start_rabbitmq
  log "databases (sqlite)"
  sync_databases
  start_wsgi keystone "${PORT[keystone]}" keystone.wsgi.api OS_KEYSTONE_CONFIG_DIR="$ETC/keystone"
  wait_http keystone "http://$HOST:${PORT[keystone]}/v3"
  log "catalog"
  HARNESS_HOST=$HOST "$VENV/bin/python" "$here/bootstrap.py" catalog "$STATE"
  start_wsgi placement "${PORT[placement]}" placement.wsgi.api OS_PLACEMENT_CONFIG_DIR="$ETC/placement"
  start_wsgi glance "${PORT[glance]}" glance.wsgi.api OS_GLANCE_CONFIG_DIR="$ETC/glance"
  start_wsgi neutron "${PORT[neutron]}" neutron.wsgi.api OS_NEUTRON_CONFIG_DIR="$ETC/neutron"
  start_wsgi nova-api "${PORT[nova-api]}" nova.wsgi.osapi_compute OS_NOVA_CONFIG_DIR="$ETC/nova" \
    OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf;nova-db.conf"
  start nova-conductor "$VENV/bin/nova-conductor" "${NOVA_DB_CONF[@]}"
  start nova-scheduler "$VENV/bin/nova-scheduler" "${NOVA_DB_CONF[@]}"
  start nova-compute "$VENV/bin/nova-compute" --config-file "$ETC/nova/nova.conf"
  start_wsgi ironic "${PORT[ironic]}" ironic.wsgi HARNESS_ARGV="--config-file $ETC/ironic/ironic.conf"
  start ironic-conductor "$VENV/bin/ironic-conductor" --config-file "$ETC/ironic/ironic.conf"
  local s
  for s in placement glance neutron nova-api ironic; do
    wait_http "$s" "http://$HOST:${PORT[$s]}/"
  done
  log "services up; resources"
  log "mapping the compute host into cell1"
  local deadline=$((SECONDS + 180))
  until "$VENV/bin/nova-manage" "${NOVA_DB_CONF[@]}" cell_v2 discover_hosts --strict >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "nova-compute never registered: $LOGS/nova-compute.log"; exit 1; }
    for s in $SERVICES; do alive "$s" || { log "$s stopped: see $LOGS/$s.log"; exit 1; }; done
    sleep 2
  done
  HARNESS_HOST=$HOST "$VENV/bin/python" "$here/bootstrap.py" resources "$STATE"
  log "up in $((SECONDS - t0)) s; clouds.yaml: $STATE/clouds.yaml (eval \"\$($0 env)\")"
}

down() {
  local sessions deadline=$((SECONDS + 20))
  if [[ -f $RUN/rabbitmq.pid ]] && alive rabbitmq; then
    (rabbit_env && /usr/lib/rabbitmq/bin/rabbitmqctl -q stop >/dev/null 2>&1) || true
  fi
  # Each service is a session of its own (setsid): its id is the pid in run/.
  sessions=$(cat "$RUN"/*.pid 2>/dev/null | paste -sd, -)
  if [[ -n $sessions ]]; then
    pkill -TERM -s "$sessions" || true
    while pgrep -s "$sessions" >/dev/null && ((SECONDS < deadline)); do sleep 1; done
    pkill -KILL -s "$sessions" || true
  fi
  (ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1) || true
  rm -rf "$STATE"
  log "down"
}

status() {
  local s
  for s in $SERVICES; do
    if alive "$s"; then echo "$s running (pid $(<"$RUN/$s.pid"))"; else echo "$s stopped"; fi
  done
}

# errors: each service's last logged errors, for a test run that failed (before `down` deletes the logs).
errors() {
  local s
  for s in $SERVICES; do
    [[ -f $LOGS/$s.log ]] || continue
    echo "== $s (errors, last 15)"
    grep -E 'ERROR|CRITICAL|Traceback|RemoteError|database is locked' "$LOGS/$s.log" | tail -15 || true
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) echo "export OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml OS_CLOUD=trove-local" ;;
  status) status ;;
  errors) errors ;;
  *)
    echo "usage: $0 up|down|env|status|errors" >&2
    exit 2
    ;;
esac
