# shellcheck shell=bash
# Installing Debian packages for Conveyor's scripts: source it, then `apt_install PKG...`.
# As root or through sudo; the packages' own services are kept from starting (our scripts and
# tests start their servers themselves, on free ports); the package lists are refreshed once
# when the install fails on a fresh machine. Callers define `say` and `die`.

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  else
    command -v sudo >/dev/null 2>&1 || die "'$*' needs root: run it as root or install sudo"
    sudo "$@"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $*; install it with your package manager"
  say "installing Debian packages: $*"
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    made_policy=1
  fi
  if ! DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null 2>&1; then
    say "apt-get update"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
  fi
  ((made_policy)) && as_root rm -f "$policy"
  return 0
}
