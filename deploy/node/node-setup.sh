#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# node-setup: the init container of the kybernate agent pod. Puts what containerd on the host
# needs for the `kybernate` runtime handler in place, idempotently:
#   1. kybernate-runc        image:/usr/local/bin/kybernate-runc -> host:/usr/local/bin/kybernate-runc
#   2. the node config       ConfigMap config.json               -> host:/etc/kybernate/config.json
#   3. the containerd config: CONTAINERD_CONFIG_MODE=check (default) only reports whether the
#      handler is declared; =append appends deploy/node/kybernate-runtime.toml to the config
#      (a backup first), mirroring the runc handler's SystemdCgroup and Root.
# It never restarts containerd: that is the administrator's step (docs/install.md). It fails only
# when it cannot write what it was asked to write; anything missing on the host is a warning.
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
KYBERNATE_RUNC_SRC=${KYBERNATE_RUNC_SRC:-/usr/local/bin/kybernate-runc}
KYBERNATE_RUNC_DEST=${KYBERNATE_RUNC_DEST:-/usr/local/bin/kybernate-runc}
NODE_CONFIG_SRC=${NODE_CONFIG_SRC:-/etc/kybernate-setup/config.json}
NODE_CONFIG_DEST=${NODE_CONFIG_DEST:-/etc/kybernate/config.json}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
CONTAINERD_SNIPPET=${CONTAINERD_SNIPPET:-/etc/kybernate-setup/kybernate-runtime.toml}
CONTAINERD_CONFIG_MODE=${CONTAINERD_CONFIG_MODE:-check}
CONTAINERD_RESTART_HINT=${CONTAINERD_RESTART_HINT:-systemctl restart containerd}
# Checks that run a host binary chroot into HOST_ROOT; tests set 0 (no chroot there).
HOST_EXEC_CHECKS=${HOST_EXEC_CHECKS:-1}

CRI='plugins."io.containerd.grpc.v1.cri".containerd.runtimes'
WARNINGS=0

say() { printf 'node-setup: %s\n' "$*"; }
warn() { printf 'node-setup: warning: %s\n' "$*"; WARNINGS=$((WARNINGS + 1)); }
die() { printf 'node-setup: error: %s\n' "$*" >&2; exit 1; }

# install_file SRC DEST MODE: replace DEST atomically when its content differs.
install_file() {
  src=$1 dest=$2 mode=$3
  [ -f "$src" ] || die "$src is missing in this container"
  mkdir -p "$(dirname "$dest")" || die "cannot create $(dirname "$dest")"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    say "$dest is up to date"
    return 0
  fi
  tmp="$dest.kybernate-new.$$"
  cp "$src" "$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$dest" || {
    rm -f "$tmp"
    die "cannot write $dest"
  }
  say "installed $dest"
}

# table_value FILE TABLE KEY: the raw value of KEY in [TABLE] (first match), or nothing. Reads
# the plain `[a.b.c]` + `key = value` layout containerd writes; dotted keys or inline tables are
# not understood (then set the value by hand, docs/install.md).
table_value() {
  awk -v want="[$2]" -v key="$3" '
    /^[ \t]*\[/ { line = $0; gsub(/^[ \t]+|[ \t]+$/, "", line); sub(/[ \t]*#.*$/, "", line); cur = line; next }
    cur == want {
      line = $0; sub(/^[ \t]+/, "", line)
      if (index(line, key) == 1) {
        rest = substr(line, length(key) + 1)
        if (rest ~ /^[ \t]*=/) { sub(/^[ \t]*=[ \t]*/, "", rest); sub(/[ \t]*(#.*)?$/, "", rest); print rest; exit }
      }
    }' "$1"
}

has_table() {
  awk -v want="[$2]" '
    /^[ \t]*\[/ { line = $0; gsub(/^[ \t]+|[ \t]+$/, "", line); sub(/[ \t]*#.*$/, "", line); if (line == want) { found = 1; exit } }
    END { exit !found }' "$1"
}

# ---------------------------------------------------------------- 1. kybernate-runc, 2. node config
install_file "$KYBERNATE_RUNC_SRC" "$HOST_ROOT$KYBERNATE_RUNC_DEST" 0755
install_file "$NODE_CONFIG_SRC" "$HOST_ROOT$NODE_CONFIG_DEST" 0644
if [ "$HOST_EXEC_CHECKS" = 1 ]; then
  # --help prints kybernate-runc's own text only (--version would also run the delegate, which
  # on some hosts - MicroK8s - is only on containerd's PATH): this checks its libraries.
  if out=$(chroot "$HOST_ROOT" "$KYBERNATE_RUNC_DEST" --help 2>&1); then
    say "kybernate-runc runs on the host"
  else
    warn "kybernate-runc does not run on the host (its libraries: libcurl, jansson, protobuf-c, zstd, libmicrohttpd, OpenSSL, libarchive; see docs/install.md): $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
  fi
  if chroot "$HOST_ROOT" /bin/sh -c 'command -v criu' >/dev/null 2>&1; then
    say "criu found on the host PATH"
  else
    warn "no criu on the host's default PATH: runc (run by containerd) needs it to checkpoint and restore (docs/install.md); ignore this if containerd's PATH has it"
  fi
fi

# ---------------------------------------------------------------- 3. containerd config
cfg=$HOST_ROOT$CONTAINERD_CONFIG
case $CONTAINERD_CONFIG_MODE in
  check | append) ;;
  *) die "CONTAINERD_CONFIG_MODE must be check or append, not '$CONTAINERD_CONFIG_MODE'" ;;
esac

if [ ! -f "$cfg" ]; then
  warn "no containerd config at $CONTAINERD_CONFIG: create one (containerd config default > $CONTAINERD_CONFIG), then add deploy/node/kybernate-runtime.toml"
elif has_table "$cfg" "$CRI.kybernate"; then
  say "$CONTAINERD_CONFIG declares the kybernate runtime handler"
  for key in SystemdCgroup Root; do
    want=$(table_value "$cfg" "$CRI.runc.options" "$key")
    have=$(table_value "$cfg" "$CRI.kybernate.options" "$key")
    [ "$want" = "$have" ] || warn "$key is '${have:-unset}' for the kybernate handler but '${want:-unset}' for runc: set them alike"
  done
  binary=$(table_value "$cfg" "$CRI.kybernate.options" BinaryName)
  [ "$binary" = "\"$KYBERNATE_RUNC_DEST\"" ] ||
    warn "the kybernate handler's BinaryName is ${binary:-unset}, this node-setup installs $KYBERNATE_RUNC_DEST"
elif [ "$CONTAINERD_CONFIG_MODE" = check ]; then
  warn "$CONTAINERD_CONFIG does not declare the kybernate runtime handler: append deploy/node/kybernate-runtime.toml and restart containerd (or set CONTAINERD_CONFIG_MODE=append) - docs/install.md"
else
  [ -f "$CONTAINERD_SNIPPET" ] || die "$CONTAINERD_SNIPPET is missing in this container"
  grep -Eq '^[ \t]*version[ \t]*=[ \t]*2[ \t]*(#.*)?$' "$cfg" ||
    die "$CONTAINERD_CONFIG is not a version 2 config: add the handler by hand (docs/install.md)"
  backup="$cfg.kybernate-backup-$(date -u +%Y%m%dT%H%M%SZ)"
  cp -p "$cfg" "$backup" || die "cannot write $backup"
  tmp="$cfg.kybernate-new.$$"
  {
    cat "$cfg"
    printf '\n# BEGIN kybernate runtime handler (added by the kybernate agent node-setup; backup: %s)\n' "$(basename "$backup")"
    # The snippet ends inside the handler's options table, so mirrored keys land there.
    cat "$CONTAINERD_SNIPPET"
    for key in SystemdCgroup Root; do
      val=$(table_value "$cfg" "$CRI.runc.options" "$key")
      [ -z "$val" ] || printf '    %s = %s  # as the runc handler has it\n' "$key" "$val"
    done
    printf '# END kybernate runtime handler\n'
  } >"$tmp" && mv -f "$tmp" "$cfg" || {
    rm -f "$tmp"
    die "cannot write $CONTAINERD_CONFIG"
  }
  say "appended the kybernate runtime handler to $CONTAINERD_CONFIG (backup $(basename "$backup"))"
  warn "containerd loads it only after a restart: $CONTAINERD_RESTART_HINT (running containers keep running), then: kubectl label node \$NODE_NAME kybernate.io/runtime=ready"
fi

say "done ($WARNINGS warning(s))"
