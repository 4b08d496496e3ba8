#!/usr/bin/env bash
# What `make test` needs beyond Python packages: Debian's redis-server (tests start their own
# servers on free ports; a shared one is started on 127.0.0.1:6379 when none answers there),
# Chromium (the browser tests drive it headless), and espeak-ng and Festival with its slt voice
# (the speech n-best builder's tests). Installed through apt-get when running as root; otherwise
# this stops at once with the one command that installs them.
# With arguments, only those packages (`make test-fast` needs redis-server alone) and no shared Redis.
set -euo pipefail

# A Debian package -> what shows it is installed.
declare -A probe=(
  [redis-server]="command -v redis-server"
  [chromium]="command -v chromium"
  [espeak-ng]="command -v espeak-ng"
  [festival]="command -v text2wave"
  [festvox-us-slt-hts]="test -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts"
)
needed=("$@")
((${#needed[@]})) || needed=(redis-server chromium espeak-ng festival festvox-us-slt-hts)
missing=()
for package in "${needed[@]}"; do
  ${probe[$package]:-command -v $package} >/dev/null 2>&1 || missing+=("$package")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get) for the tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "the tests need ${missing[*]}; install with:" >&2
    echo "    sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if (($# == 0)) && ! (command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
fi
