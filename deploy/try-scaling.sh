#!/usr/bin/env bash
# A try-out of the scaled deployment on one machine, against the simulator:
# one redis-server, two hubs and an active/standby worker pair sharing it.
#
#   bash deploy/try-scaling.sh          # build, start everything, print where it is
#
# Everything listens on 127.0.0.1 only and stops on Ctrl-C. Logs and state go to a
# temporary folder printed at start. See docs/scaling.md for what to try.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || {
  echo "redis-server is needed (Debian: apt-get install redis-server)" >&2
  exit 1
}
cargo build --release --quiet
bin=$PWD/target/release/coven
work=$(mktemp -d -t coven-scaling.XXXXXX)
echo "logs and state: $work"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# A free port chosen by the kernel, for each service.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port) sim_port=$(free_port)
hub_a=$(free_port) hub_b=$(free_port) worker_a=$(free_port) worker_b=$(free_port)

wait_http() { # url: wait up to 30 s for any HTTP answer
  for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "nothing answered at $1 (see $work/*.log)" >&2
  exit 1
}

mkdir -p "$work/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work/redis" \
  --appendonly yes --appendfsync everysec --save "" >"$work/redis.log" 2>&1 &
pids+=($!)
"$bin" sim --port "$sim_port" --heartbeat-ms 5000 >"$work/sim.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sim_port/_sim/counters"
bot_id=$(curl -s "http://127.0.0.1:$sim_port/_sim" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seed"]["bot_user_id"])')

# What every process shares.
export PRIMARY_GUILD_ID=1246251873992839169
export HUB_SECRET=try-out-hub-secret
export REDIS_URL="redis://127.0.0.1:$redis_port/"
export DISCORD_BOT_TOKEN=MTI0NjI1MTg3ODE4NzE0MzE3MA.GsimXX.coven-simulator-bot-token
export DISCORD_API_URL="http://127.0.0.1:$sim_port"
export DISCORD_GATEWAY_URL="ws://127.0.0.1:$sim_port"
export JWT_ISSUER=spell-coven-try-out
export DISCORD_CLIENT_ID=$bot_id DISCORD_CLIENT_SECRET=sim-client-secret
export WORKER_ENDPOINT="http://127.0.0.1:$worker_a,http://127.0.0.1:$worker_b"
export SSL_CERT_FILE=$PWD/crates/sim/testdata/ca.pem # the simulator's voice server

for hub in a b; do
  port=$([ $hub = a ] && echo "$hub_a" || echo "$hub_b")
  HOST=127.0.0.1 PORT=$port STATE_DIR="$work/hub-$hub" \
    OAUTH_REDIRECT_URI="http://127.0.0.1:$port/auth/callback" \
    "$bin" hub >"$work/hub-$hub.log" 2>&1 &
  pids+=($!)
done
# Each worker posts to a different hub; behind a load balancer they would post to it.
for worker in a b; do
  port=$([ $worker = a ] && echo "$worker_a" || echo "$worker_b")
  hub=$([ $worker = a ] && echo "$hub_a" || echo "$hub_b")
  HEALTH_CHECK_PORT=$port STATE_DIR="$work/worker-$worker" \
    HUB_ENDPOINT="http://127.0.0.1:$hub/api/internal/events" \
    "$bin" worker >"$work/worker-$worker.log" 2>&1 &
  pids+=($!)
  echo "worker $worker: pid $! (kill -9 it to see the other take over)"
done
for port in "$hub_a" "$hub_b" "$worker_a" "$worker_b"; do wait_http "http://127.0.0.1:$port/health"; done

cat <<EOF

Running. Open both lobbies, sign in on each (the simulated Discord consents for you):
  hub a:      http://127.0.0.1:$hub_a/
  hub b:      http://127.0.0.1:$hub_b/
  workers:    http://127.0.0.1:$worker_a/health  http://127.0.0.1:$worker_b/health  ("role")
  simulator:  http://127.0.0.1:$sim_port/_sim   (move simulated users, see docs/simulator.md)
  redis:      redis-cli -p $redis_port

A simulated user joins a room (both lobbies update, with the same seq):
  curl -X POST http://127.0.0.1:$sim_port/_sim/users/\$(curl -s http://127.0.0.1:$sim_port/_sim | python3 -c 'import json,sys; print(json.load(sys.stdin)["seed"]["member_user_ids"][2])')/join \\
       -H 'content-type: application/json' \\
       -d "{\"channel_id\":\"\$(curl -s http://127.0.0.1:$sim_port/_sim | python3 -c 'import json,sys; print(json.load(sys.stdin)["seed"]["voice_channel_ids"][1])')\"}"

Ctrl-C stops everything.
EOF
wait
