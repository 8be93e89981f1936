#!/usr/bin/env bash
# Install the tradepipe host from its bundle (deploy/bundle.py): Java, Kafka (KRaft, one node),
# tradepipe (the bundle's wheel, from the hashed lock requirements/local.txt), Vector or
# `tradepipe sink`; the repository's units, tradepipe-verify's timer and its database URL
# (/etc/tradepipe/verify.env, root-only); `tradepipe migrate` once; then start everything.
# Run as root by the EC2 user data of deploy/tradepipe.yaml, on Amazon Linux 2023 (dnf):
#
#   host-setup.sh --bundle DIR --bundle-key KEY --region REGION --bucket BUCKET \
#                 --sink vector|sink --symbols btcusdt,ethusdt --db-secret SECRET_ARN \
#                 [--root DIR] [--files-only]
#
# The user data runs it at every boot: with the KEY installed last time
# (/opt/tradepipe/installed-bundle) it does nothing; with a new one it installs again
# (idempotent: the broker's cluster id and log are kept, migrate is a no-op when up to date)
# and restarts the services.
# `host-setup.sh --secret-url < SECRET_STRING` prints the database URL of a secret's string.
# --files-only writes only the files (units, broker settings, environment files, verify.env
# from the secret) under --root (default /) and installs, migrates and starts nothing:
# tests/deploy runs it that way and compares what it wrote with the repository. Every step is printed; the first error stops it.
set -euo pipefail

bundle="" bundle_key="" region="" bucket="" sink="" symbols="" secret="" root="" files_only=0
venv=/opt/tradepipe/venv attempts=30 delay=10
mode=install
case "${1:-}" in
  --secret-url) mode="secret-url"; shift ;;
  --migrate-only) mode="migrate-only"; shift ;;
esac
while (($#)); do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --bundle-key) bundle_key="$2"; shift 2 ;;
    --region) region="$2"; shift 2 ;;
    --bucket) bucket="$2"; shift 2 ;;
    --sink) sink="$2"; shift 2 ;;
    --symbols) symbols="$2"; shift 2 ;;
    --db-secret) secret="$2"; shift 2 ;;
    --root) root="${2%/}"; shift 2 ;;
    --files-only) files_only=1; shift ;;
    --venv) venv="$2"; shift 2 ;;
    --migrate-attempts) attempts="$2"; shift 2 ;;
    --migrate-delay) delay="$2"; shift 2 ;;
    *) echo "host-setup: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ "$mode" == install ]]; then
  for name in bundle bundle_key region bucket sink symbols secret; do
    flag="${name/secret/db-secret}"
    [[ -n "${!name}" ]] || { echo "host-setup: --${flag/_/-} is required" >&2; exit 2; }
  done
  [[ "$sink" == vector || "$sink" == sink ]] || { echo "host-setup: --sink vector|sink" >&2; exit 2; }
  [[ -f "$bundle/kafka/server.properties" ]] || { echo "host-setup: $bundle: no bundle" >&2; exit 2; }
fi

step() { printf '== host-setup: %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
# the other service: Vector or the built-in sink
if [[ "$sink" == vector ]]; then mover=tradepipe-vector; else mover=tradepipe-sink; fi

install_system_packages() {
  step "Java 17 and Python 3.11"
  run dnf install -y -q java-17-amazon-corretto-headless python3.11 python3.11-pip
  if [[ "$sink" == vector ]]; then
    step "Vector (its own rpm repository)"
    curl --proto '=https' --tlsv1.2 -sSfL https://setup.vector.dev -o /tmp/vector-setup.sh
    run bash /tmp/vector-setup.sh
    run dnf install -y -q vector
    run systemctl disable --now vector.service || true  # tradepipe-vector.service runs it
  fi
}

kafka_cluster_id() {
  # Kafka's cluster id: 16 random bytes, url-safe base64 without padding, not starting with "-"
  local id="-"
  while [[ "$id" == -* ]]; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  printf '%s' "$id"
}

install_files() {
  step "Kafka: jars, settings (stack/kafka/server.properties.in, role host), unit"
  install -d -m 0755 "$root/opt/kafka/libs" "$root/etc/kafka" "$root/etc/systemd/system" \
    "$root/etc/tradepipe"
  shopt -s nullglob
  local jars=("$bundle"/kafka/libs/*.jar)
  shopt -u nullglob
  ((${#jars[@]} == 0)) || install -m 0644 "${jars[@]}" "$root/opt/kafka/libs/"
  install -m 0644 "$bundle/kafka/server.properties" "$root/etc/kafka/server.properties"
  install -m 0644 "$bundle/stack/kafka/log4j2.xml" "$root/etc/kafka/log4j2.xml"
  if [[ ! -s "$root/etc/kafka/cluster.env" ]]; then  # kept across re-runs: the log is formatted
    printf 'KAFKA_CLUSTER_ID=%s\n' "$(kafka_cluster_id)" >"$root/etc/kafka/cluster.env"
  fi

  step "units: kafka, tradepipe-producer, $mover, tradepipe-verify and its timer (the repository's, unchanged)"
  for unit in kafka.service tradepipe-producer.service "$mover.service" \
    tradepipe-verify.service tradepipe-verify.timer; do
    install -m 0644 "$bundle/systemd/$unit" "$root/etc/systemd/system/$unit"
  done

  step "settings: /etc/tradepipe"
  sed "s/^TRADEPIPE_FEED_SYMBOLS=.*/TRADEPIPE_FEED_SYMBOLS=$symbols/" \
    "$bundle/systemd/tradepipe.env.example" >"$root/etc/tradepipe/tradepipe.env"
  chmod 0644 "$root/etc/tradepipe/tradepipe.env"
  if [[ "$sink" == vector ]]; then
    install -m 0644 "$bundle/vector/vector.toml" "$root/etc/tradepipe/vector.toml"
    cat >"$root/etc/tradepipe/vector.env" <<EOF
TRADEPIPE_S3_BUCKET=$bucket
TRADEPIPE_S3_REGION=$region
TRADEPIPE_S3_ENDPOINT_URL=https://s3.$region.amazonaws.com
TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
EOF
  else
    # credentials: the instance role (no keys in any file)
    cat >"$root/etc/tradepipe/tradepipe.toml" <<EOF
# tradepipe sink on the deployed host (deploy/host-setup.sh); every key: docs/configuration.md
[kafka]
bootstrap_servers = "127.0.0.1:9092"

[sink]
objects = "s3"

[s3]
bucket = "$bucket"
region = "$region"
EOF
    chmod 0644 "$root/etc/tradepipe/tradepipe.toml"
  fi
}

install_tradepipe() {
  step "tradepipe: $venv from requirements/local.txt (hashed) and the wheel"
  [[ -x "$venv/bin/python" ]] || run python3.11 -m venv "$venv"
  run "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes \
    -r "$bundle/requirements/local.txt"
  local wheels=("$bundle"/dist/tradepipe-*.whl)
  run "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    --force-reinstall "${wheels[0]}"
}

secret_url() {
  # A secret's string on stdin -> the database URL on stdout: the string is the URL itself or
  # RDS's JSON (username, password, host, port, dbname), the two shapes the Lambda reads
  # (lambda/handler.py, url_from_secret; tests/deploy checks both give the same URL).
  python3 -c '
import json, sys, urllib.parse
text = sys.stdin.read().strip()
s = json.loads(text) if text.startswith("{") else {"url": text}
if "url" in s:
    print(s["url"])
else:
    u = {k: urllib.parse.quote(str(s[k]), safe="") for k in ("username", "password")}
    print("mysql://%s:%s@%s:%s/%s" % (
        u["username"], u["password"], s["host"], s.get("port", 3306), s["dbname"]))
'
}

database_url() {
  aws secretsmanager get-secret-value --region "$region" --secret-id "$secret" \
    --query SecretString --output text | secret_url
}

install_verify_env() {
  # tradepipe-verify.service's second EnvironmentFile: TRADEPIPE_DB_URL, password included, in
  # a file only root reads (systemd reads EnvironmentFile= as root, before the dynamic user).
  # Written under umask 077 and renamed into place: never readable by anyone else, even briefly.
  step "settings: /etc/tradepipe/verify.env (the database URL, mode 0600, for tradepipe-verify)"
  local url tmp
  url="$(database_url)"
  if [[ -z "$url" || "$url" == *[$'\n\'']* ]]; then
    # single-quoted in the file (no escapes, no expansion): a quote or newline cannot be written
    echo "host-setup: the database secret's URL is empty or holds a quote or newline" >&2
    return 1
  fi
  tmp="$(umask 077 && mktemp "$root/etc/tradepipe/.verify.env.XXXXXX")"
  printf "# written by host-setup.sh from the database secret; root only\nTRADEPIPE_DB_URL='%s'\n" \
    "$url" >"$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$root/etc/tradepipe/verify.env"
}

migrate() {
  step "tradepipe migrate (once; the database may still be starting: $attempts tries, $delay s apart)"
  local url attempt
  url="$(database_url)"
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    # the URL in the environment, not on a command line other users can read
    if TRADEPIPE_DB_URL="$url" "$venv/bin/tradepipe" migrate; then
      return 0
    fi
    if ((attempt < attempts)); then
      echo "host-setup: migrate attempt $attempt failed; retrying in $delay s" >&2
      sleep "$delay"
    fi
  done
  echo "host-setup: tradepipe migrate failed $attempts times: the Lambda would refuse every object" >&2
  return 1
}

start_services() {
  step "(re)start: kafka, tradepipe-producer, $mover; tradepipe-verify.timer"
  run systemctl daemon-reload
  run systemctl enable kafka.service tradepipe-producer.service "$mover.service" \
    tradepipe-verify.timer
  run systemctl restart kafka.service
  run systemctl restart tradepipe-producer.service "$mover.service" tradepipe-verify.timer
}

installed="/opt/tradepipe/installed-bundle"

if [[ "$mode" == secret-url ]]; then
  secret_url
  exit 0
fi
if [[ "$mode" == migrate-only ]]; then
  [[ -n "$region" && -n "$secret" ]] || { echo "host-setup: --region and --db-secret" >&2; exit 2; }
  migrate
  exit 0
fi
if ((files_only)); then
  install_files
  install_verify_env
  exit 0
fi
[[ -z "$root" ]] || { echo "host-setup: --root only with --files-only" >&2; exit 2; }
if [[ -f "$installed" && "$(cat "$installed")" == "$bundle_key" ]]; then
  step "bundle $bundle_key is installed: nothing to do (systemd starts the services)"
  exit 0
fi
install_system_packages
install_files
install_verify_env
install_tradepipe
migrate
start_services
printf '%s\n' "$bundle_key" >"$installed"
step "done: bundle $bundle_key"
