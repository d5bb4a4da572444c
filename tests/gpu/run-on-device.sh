#!/usr/bin/env bash
# GPU checkpoint/restore on a real GPU machine, in one call (issue "GPU
# checkpoint and restore", item 6).  It installs the runtime from the carried
# offline bundle into a prefix under /tmp (scripts/setup --from-bundle), starts
# a private containerd (tests/harness/kybnode), and for each workload and size:
#
#   1. runs the workload in a container with the GPU's device nodes and the
#      host's /usr, /lib, /lib64, /opt (and python's home) mounted read-only:
#        vram  -- tests/gpu/vram_check (CUDA C++): N GiB of VRAM, every word
#                 checked and bumped each iteration ("iter K ok")
#        torch -- tests/gpu/torch_check.py with the machine's python3 and
#                 PyTorch: N GiB tensor + matmul checksum ("step K ok")
#        multi -- a shell (not a CUDA process) with two vram_check children
#                 of N GiB each (lines tagged a and b)
#   2. `kybernate checkpoint` (GPU lock -> VRAM to host -> containerd
#      Tasks.Checkpoint; the container stops);
#   3. `kybernate restore` into a NEW container through kybernate-runc (runc
#      restore, then GPU restore + unlock);
#   4. asserts that the new container's first line is iteration K+1 of the
#      old one's last, that it goes on, and that no line says CORRUPT (the
#      workloads check their data themselves);
#   5. records per-phase times and the image size.
#
# And the rollback case: a checkpoint whose CRIU dump fails after the GPU
# checkpoint (its store is a 64 MiB tmpfs) must leave the workload running
# with correct data.
#
# Usage (root):
#   tests/gpu/run-on-device.sh [--sizes "1 4 16"] [--workloads "vram torch multi"]
#                              [--rollback yes|no|only] [--carry DIR] [--out DIR]
#                              [--cpu-only] [--downtime "16"]
#   --carry  what tests/gpu/prepare-carry.sh made (default: <repo>/.device)
#   --out    results (default: $OUT, else /tmp/kyb-gpu-out): run.log,
#            results.tsv, summary.md, machine.txt, per-case logs
#   --cpu-only  the same flow with the static counter program and no GPU (to
#            check the script itself on a machine without a GPU)
#   --restore-gpus LIST  restore with `kybernate restore --gpus LIST` (GPU
#            indices or UUIDs): the workloads always run on /dev/nvidia0, so
#            on a two-GPU machine `--restore-gpus 1` moves them to GPU 1
#            (the restored process must then show up on GPU 1's UUID)
#   --downtime SIZES  also a `checkpoint --leave-running` of a vram workload per
#            size: the workload's longest gap between iterations (its
#            downtime) against the driver's and CRIU's own phases; the image
#            is packaged after the workload goes on (results in downtime.tsv)
#   --baseline-cli PATH  with --downtime: the same case also with this
#            kybernate binary (an older build), in the same run, for comparison
# Exit status: 0 when every case passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

sizes="1 4 16" workloads="vram torch" rollback=yes cpu_only=0 restore_gpus="" downtime="" baseline_cli=""
carry=$repo/.device out=${OUT:-/tmp/kyb-gpu-out}
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2; shift ;;
    --workloads) workloads=$2; shift ;;
    --rollback) rollback=$2; shift ;;
    --carry) carry=$2; shift ;;
    --out) out=$2; shift ;;
    --cpu-only) cpu_only=1 ;;
    --restore-gpus) restore_gpus=$2; shift ;;
    --downtime) downtime=$2; shift ;;
    --baseline-cli) baseline_cli=$2; shift ;;
    -h|--help) sed -n '2,47p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-on-device: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "run-on-device: run as root" >&2; exit 2; }
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
say() { printf '%s [gpu] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "FATAL: $*"; exit 1; }
failures=0
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
fail() { say "FAIL: $*"; failures=$((failures + 1)); }

prefix=/tmp/kyb-prefix
work=/tmp/kyb-gpu
# the node's default store: kybernate-runc restores only from configured stores
store_dir=/var/lib/kybernate/images
mkdir -p "$work" "$store_dir"

# ---------------------------------------------------------------- machine facts
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc)"
  grep -E 'MemTotal' /proc/meminfo
  echo "thp: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
  echo "cgroup: $(stat -fc %T /sys/fs/cgroup)"
  if [ "$cpu_only" -eq 0 ]; then
    nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,persistence_mode \
      --format=csv 2>&1
    echo "python3: $(command -v python3) -> $(readlink -f "$(command -v python3)")"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())' 2>&1
  fi
  df -h /tmp / | sed 's/^/df: /'
} >"$out/machine.txt" 2>&1
say "machine:"; sed 's/^/    /' "$out/machine.txt"

# ---------------------------------------------------------------- runtime
bundle=$carry/bundle-gpu
[ -f "$bundle/MANIFEST" ] || bundle=$carry/bundle
[ -f "$bundle/MANIFEST" ] || die "no bundle in $carry (tests/gpu/prepare-carry.sh makes it)"
if [ -f "$prefix/.kybernate-prefix" ]; then
  # shellcheck disable=SC1091
  . "$prefix/env.sh" # installed by an earlier call on this machine
elif ! command -v containerd >/dev/null || ! command -v criu >/dev/null; then
  say "installing the runtime from $bundle into $prefix"
  rm -rf "$prefix" # a half-made prefix of an earlier, failed call
  # --criu-config yes: "network-lock nftables" in /etc/criu/default.conf --
  # iptables-restore through the nft backend fails on this kernel for a
  # container with its own network namespace (docs/gpu.md, "CRIU's network lock").
  "$bundle/setup" --from-bundle "$bundle" --prefix "$prefix" --criu-config yes --netfilter no \
    >"$out/setup.log" 2>&1 || { tail -n 30 "$out/setup.log"; die "setup --from-bundle failed"; }
  tail -n 3 "$out/setup.log" | sed 's/^/    /'
  # shellcheck disable=SC1091
  . "$prefix/env.sh"
fi
say "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}'), criu $(criu --version | awk 'NR==1 {print $2}')"
[ -f /etc/criu/default.conf ] && say "/etc/criu/default.conf: $(grep -v '^#' /etc/criu/default.conf | tr '\n' ' ')"

build=$carry/build
bin=$build/cmd
missing=$(ldd "$bin/kybernate" "$bin/kybernate-runc" 2>&1 | grep 'not found' || true)
[ -z "$missing" ] || die "libraries missing for the binaries: $missing"

# ---------------------------------------------------------------- workloads
gpu_bin=$work/bin
mkdir -p "$gpu_bin"
if [ "$cpu_only" -eq 0 ]; then
  if [ -x "$carry/gpu/vram_check" ] && ! ldd "$carry/gpu/vram_check" 2>&1 | grep -q 'not found'; then
    cp "$carry/gpu/vram_check" "$gpu_bin/"
  else
    say "building vram_check with $(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
    "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O2 -arch=sm_90 -cudart static \
      -o "$gpu_bin/vram_check" tests/gpu/vram_check.cu || die "nvcc failed"
  fi
  cp tests/gpu/torch_check.py "$gpu_bin/"
fi

# ---------------------------------------------------------------- node
export KYB_TEST_BUSYBOX=${KYB_TEST_BUSYBOX:-$carry/busybox}
[ -x "$KYB_TEST_BUSYBOX" ] || KYB_TEST_BUSYBOX=/bin/busybox
say "starting a private containerd node"
# kybernate-runc inherits containerd's environment: one info line per restore
# with its timings, in runc's --log file (docs/runtime.md)
export KYBERNATE_LOG_LEVEL=info
node_env=$(PYTHON=$(command -v python3) tests/harness/kybnode start --name gpu --build-dir "$build" \
  --base-dir "$work/nodes") || die "kybnode start failed"
eval "$node_env"
cleanup() {
  say "stopping the node"
  tests/harness/kybnode stop "$KYB_NODE_DIR" >/dev/null 2>&1 || say "node stop reported a problem"
  umount "$work/small-store" 2>/dev/null || true
}
trap cleanup EXIT
say "node $KYB_NODE_DIR, socket $KYB_NODE_SOCKET"
cli=$bin/kybernate
kyb() { "$cli" --address "$KYB_NODE_SOCKET" --namespace default "$@"; }

# The host directories a container needs to run the host's CUDA programs and
# python: read-only binds (plain bind, each submount its own bind, so that
# every mount is one runc names to CRIU as external).
mount_args=()
add_mount() { mount_args+=(--mount "type=bind,src=$1,dst=$2,options=bind:ro"); }
dev_args=()
env_args=()
if [ "$cpu_only" -eq 0 ]; then
  for d in /usr /lib /lib64 /opt; do [ -e "$d" ] && add_mount "$(readlink -f "$d")" "$d"; done
  pyhome=$(readlink -f "$(command -v python3)")
  top=/${pyhome#/}; top=/${top#/}; top=/$(echo "$top" | cut -d/ -f2)
  case "$top" in /usr|/lib|/lib64|/opt) ;; *) add_mount "$top" "$top" ;; esac
  # submounts below those (e.g. a read-only driver folder)
  while read -r target; do
    case "$target" in /usr/*|/opt/*|"$top"/*) add_mount "$target" "$target" ;; esac
  done < <(findmnt -rn -o TARGET | sort)
  add_mount /etc/ld.so.cache /etc/ld.so.cache
  add_mount "$gpu_bin" /kyb
  for d in /dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools; do
    [ -e "$d" ] && dev_args+=(--device "$d")
  done
  cudadir=$(dirname "$(ldconfig -p | awk '/libcuda\.so\.1 .*x86-64/ {print $NF; exit}')")
  env_args+=(--env "LD_LIBRARY_PATH=$cudadir" --env HOME=/tmp --env PYTHONUNBUFFERED=1
             --env NCCL_NVLS_ENABLE=0 --env TORCH_SYMM_MEM_DISABLE_MULTICAST=1
             --env NVSHMEM_DISABLE_NVLS=1)
  say "container mounts: ${mount_args[*]}"
  say "devices: ${dev_args[*]}; libcuda in $cudadir"
fi

# workload command line (into the array WL) and its progress lines
wl_cmd() { # KIND GIB
  case "$1" in
    vram) WL=(/kyb/vram_check "$2" 200) ;;
    torch) WL=("$(command -v python3)" /kyb/torch_check.py "$2" 0.2) ;;
    # two CUDA processes under a non-CUDA init (a shell): lock both, then
    # checkpoint both; restore both, then unlock both
    multi) WL=(/bin/sh -c "/kyb/vram_check $2 200 a & /kyb/vram_check $2 200 b & wait") ;;
    counter) WL=(/usr/bin/counter --mem $(($2 * 256)) --file /data/state --interval 200) ;;
  esac
}
wl_tags() { case "$1" in multi) echo "a b" ;; *) echo "-" ;; esac; }
wl_re() { # KIND TAG
  case "$1" in
    vram) echo '^iter [0-9]+ ok' ;;
    torch) echo '^step [0-9]+ ok' ;;
    multi) echo "^iter [0-9]+ ok.* tag $2\$" ;;
    counter) echo '^count [0-9]+$' ;;
  esac
}
last_iter() { grep -E "$(wl_re "$1" "${3:--}")" "$2" 2>/dev/null | tail -n 1 | awk '{print $2}'; }
first_iter() { grep -E "$(wl_re "$1" "${3:--}")" "$2" 2>/dev/null | head -n 1 | awk '{print $2}'; }
wait_iter() { # KIND LOG N SECONDS [TAG]: until the log shows iteration >= N
  local i v
  for i in $(seq 1 $(($4 * 5))); do
    v=$(last_iter "$1" "$2" "${5:--}")
    [ -n "$v" ] && [ "$v" -ge "$3" ] && return 0
    grep -q CORRUPT "$2" 2>/dev/null && return 1
    sleep 0.2
  done
  return 1
}
run_wl() { # KIND GIB ID LOG
  local kind=$1 gib=$2 id=$3 log=$4
  local extra=()
  [ "$cpu_only" -eq 0 ] && extra=("${dev_args[@]}" "${mount_args[@]}" "${env_args[@]}")
  wl_cmd "$kind" "$gib"
  ctr --address "$KYB_NODE_SOCKET" -n default run -d --runc-root "$KYB_NODE_RUNC_ROOT" \
    --cgroup "$KYB_NODE_CGROUP_PARENT/$id" --log-uri "file://$log" "${extra[@]}" \
    "$KYB_NODE_BUSYBOX_IMAGE" "$id" "${WL[@]}"
}
drop() { # ID: kill and delete a container and its task
  ctr --address "$KYB_NODE_SOCKET" -n default task kill -s KILL "$1" >/dev/null 2>&1
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    ctr --address "$KYB_NODE_SOCKET" -n default task delete "$1" >/dev/null 2>&1 && break
    ctr --address "$KYB_NODE_SOCKET" -n default task ls -q 2>/dev/null | grep -qx "$1" || break
    sleep 0.3
  done
  ctr --address "$KYB_NODE_SOCKET" -n default containers delete "$1" >/dev/null 2>&1
}
runc_log_of() { # ID: kybernate-runc's "restored from" line for the container
  grep -rh "create $1: restored" "$KYB_NODE_DIR" 2>/dev/null | tail -n 1
}
json_num() { # FILE KEY: a number from a JSON object's "timings"
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m.get("timings",{}).get(sys.argv[2],""))' "$1" "$2"
}

printf 'workload\tGiB\tresult\tgpu_lock_ms\tgpu_checkpoint_ms\tcriu_dump_ms\tpackage_ms\tcheckpoint_total_s\timage_bytes\trunc_restore_ms\tgpu_restore_ms\tgpu_unlock_ms\trestore_total_s\tlast_iter\tfirst_iter_after\n' >"$out/results.tsv"

run_case() { # KIND GIB
  local kind=$1 gib=$2 id="$1-$2g" id2="$1-$2g-restored" name="$1-$2g-$(date +%s)"
  local log1=$out/$id.log log2=$out/$id2.log result=ok
  say "=== $kind, $gib GiB ==="
  drop "$id"; drop "$id2"; rm -f "$log1" "$log2"
  run_wl "$kind" "$gib" "$id" "$log1" || { fail "$kind $gib GiB: container did not start"; return; }
  local tag
  for tag in $(wl_tags "$kind"); do
    if ! wait_iter "$kind" "$log1" 3 240 "$tag"; then
      fail "$kind $gib GiB: workload did not reach iteration 3"; tail -n 5 "$log1"; drop "$id"; return
    fi
  done
  say "$(head -n 1 "$log1")"
  local t0 t1 t2
  t0=$(date +%s.%N)
  if ! kyb --log-level info checkpoint "$id" --name "$name" >"$out/$id.checkpoint.out" 2>"$out/$id.checkpoint.err"; then
    fail "$kind $gib GiB: checkpoint failed: $(tail -n 5 "$out/$id.checkpoint.err")"; drop "$id"; return
  fi
  t1=$(date +%s.%N)
  local ckpt_s; ckpt_s=$(sub "$t1" "$t0")
  local last="" t lasts=()
  for t in $(wl_tags "$kind"); do lasts+=("$(last_iter "$kind" "$log1" "$t")"); done
  last=${lasts[0]}
  local manifest=$store_dir/$name/manifest.json
  local bytes; bytes=$(du -sb "$store_dir/$name" | cut -f1)
  say "checkpoint: $(grep -h 'GPU checkpoint' "$out/$id.checkpoint.err" | tail -n 1 | sed 's/.*GPU/GPU/')"
  say "checkpoint took $ckpt_s s, image $((bytes / 1048576)) MiB, last iteration ${lasts[*]}"
  drop "$id"
  t1=$(date +%s.%N)
  local gpus_arg=()
  [ -n "$restore_gpus" ] && gpus_arg=(--gpus "$restore_gpus")
  if ! kyb restore "$name" --name "$id2" --log "$log2" --runc-root "$KYB_NODE_RUNC_ROOT" \
    "${gpus_arg[@]}" >"$out/$id2.restore.out" 2>"$out/$id2.restore.err"; then
    fail "$kind $gib GiB: restore failed: $(tail -n 8 "$out/$id2.restore.err")"; result=fail
  fi
  t2=$(date +%s.%N)
  local line; line=$(runc_log_of "$id2")
  say "kybernate-runc: ${line##*create }"
  grep -rh '"GPU map: ' "$KYB_NODE_DIR" 2>/dev/null | tail -n 4 | sed 's/.*"msg":"\([^"]*\)".*/\1/' |
    while read -r m; do say "kybernate-runc: $m"; done
  if [ "$cpu_only" -eq 0 ]; then
    local newpid want_uuid
    newpid=$(ctr --address "$KYB_NODE_SOCKET" -n default task ls 2>/dev/null | awk -v id="$id2" '$1 == id {print $2}')
    say "GPU processes now (pid, GPU, memory): $(nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader 2>&1 | tr '\n' ';')"
    if [ -n "$restore_gpus" ] && [ -n "$newpid" ]; then
      want_uuid=$(nvidia-smi --query-gpu=index,uuid --format=csv,noheader | awk -F', ' -v i="${restore_gpus%%,*}" '$1 == i || $2 == i {print $2}')
      if nvidia-smi --query-compute-apps=pid,gpu_uuid --format=csv,noheader | grep -q "$want_uuid"; then
        say "the restored workload runs on $want_uuid (asked: --gpus $restore_gpus)"
      else
        fail "$kind $gib GiB: no process on $want_uuid after restore --gpus $restore_gpus"; result=fail
      fi
    fi
  fi
  local first="" i=0 f
  if [ "$result" = ok ]; then
    for t in $(wl_tags "$kind"); do
      local l=${lasts[$i]}
      i=$((i + 1))
      if ! wait_iter "$kind" "$log2" $((l + 5)) 120 "$t"; then
        fail "$kind $gib GiB: restored workload ($t) did not go on to iteration $((l + 5))"
        tail -n 5 "$log2"; result=fail
      fi
      f=$(first_iter "$kind" "$log2" "$t")
      [ -n "$first" ] || first=$f
      if [ "$f" != "$((l + 1))" ]; then
        fail "$kind $gib GiB: restored workload ($t) began at iteration '$f', want $((l + 1))"; result=fail
      fi
    done
    if grep -q CORRUPT "$log2"; then fail "$kind $gib GiB: $(grep CORRUPT "$log2")"; result=fail; fi
    [ "$result" = ok ] && say "PASS: new container went on at iteration $first (old one stopped at $last)${lasts[1]:+ and ${lasts[1]}+1 for the second process}: $(tail -n 1 "$log2")"
  fi
  ms() { echo "$line" | sed -n "s/.*$1 \([0-9.]*\) ms.*/\1/p"; }
  local gpu_r gpu_u
  gpu_r=$(grep -rh "GPU restore of" "$KYB_NODE_DIR" 2>/dev/null | grep -o 'restore [0-9.]* ms' | tail -n 1 | awk '{print $2}')
  gpu_u=$(grep -rh "GPU restore of" "$KYB_NODE_DIR" 2>/dev/null | grep -o 'unlock [0-9.]* ms' | tail -n 1 | awk '{print $2}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\n' "$kind" "$gib" "$result" \
    "$(json_num "$manifest" gpu_lock)" "$(json_num "$manifest" gpu_checkpoint)" \
    "$(json_num "$manifest" criu_dump)" "$(json_num "$manifest" package)" \
    "$ckpt_s" "$bytes" "$(ms 'runc restore')" "${gpu_r:-}" "${gpu_u:-}" \
    "$(sub "$t2" "$t1")" "$last" "$first" >>"$out/results.tsv"
  cp "$manifest" "$out/$id.manifest.json" 2>/dev/null
  drop "$id2"
  kyb images rm "$name" >/dev/null 2>&1 || rm -rf "${store_dir:?}/$name"
}

# A CRIU dump that fails after the GPU checkpoint: the workload must go on.
rollback_case() {
  local kind=vram gib=1 id=rollback log=$out/rollback.log
  [ "$cpu_only" -eq 1 ] && kind=counter
  say "=== rollback: CRIU dump fails after the GPU checkpoint ($kind, $gib GiB) ==="
  drop "$id"; rm -f "$log"
  mkdir -p "$work/small-store"
  mountpoint -q "$work/small-store" || mount -t tmpfs -o size=64m tmpfs "$work/small-store"
  run_wl "$kind" "$gib" "$id" "$log" || { fail "rollback: container did not start"; return; }
  wait_iter "$kind" "$log" 3 120 || { fail "rollback: workload did not start"; drop "$id"; return; }
  if kyb --log-level info checkpoint "$id" --leave-running --to "file://$work/small-store" \
    >"$out/rollback.out" 2>"$out/rollback.err"; then
    fail "rollback: the checkpoint into a 64 MiB store succeeded"
  else
    say "checkpoint failed as it should: $(grep -v '^\s*$' "$out/rollback.err" | tail -n 4 | cut -c1-300)"
  fi
  local last; last=$(last_iter "$kind" "$log")
  if wait_iter "$kind" "$log" $((last + 5)) 60 && ! grep -q CORRUPT "$log"; then
    say "PASS: rollback: the workload went on to iteration $(last_iter "$kind" "$log") with correct data"
    printf 'rollback\t%s\tok\n' "$gib" >>"$out/results.tsv"
  else
    fail "rollback: workload did not go on: $(tail -n 3 "$log")"
    printf 'rollback\t%s\tfail\n' "$gib" >>"$out/results.tsv"
  fi
  [ -z "$(ls -A "$work/small-store")" ] || fail "rollback: something was left in the store: $(ls "$work/small-store")"
  drop "$id"
}

# --leave-running: how long the workload itself stood still.  vram_check
# stamps every iteration ("t <epoch>"); the longest gap between two is the
# downtime.  The floor is what the driver and CRIU do while it is stopped.
downtime_case() { # GIB LABEL (the CLI is $cli)
  local gib=$1 label=$2 id="live-$1g-$2" log=$out/live-$1g-$2.log name="live-$1g-$2-$(date +%s)"
  say "=== leave-running downtime: vram, $gib GiB, $label ($cli: $("$cli" --version)) ==="
  drop "$id"; rm -f "$log"
  run_wl vram "$gib" "$id" "$log" || { fail "downtime $gib GiB: container did not start"; return; }
  wait_iter vram "$log" 3 240 || { fail "downtime $gib GiB: workload did not start"; drop "$id"; return; }
  local t0 t1; t0=$(date +%s.%N)
  if ! kyb --log-level info checkpoint "$id" --leave-running --name "$name" \
    >"$out/$id.checkpoint.out" 2>"$out/$id.checkpoint.err"; then
    fail "downtime $gib GiB: checkpoint failed: $(tail -n 5 "$out/$id.checkpoint.err")"; drop "$id"; return
  fi
  t1=$(date +%s.%N)
  local last; last=$(last_iter vram "$log")
  if ! wait_iter vram "$log" $((last + 5)) 120 || grep -q CORRUPT "$log"; then
    fail "downtime $gib GiB: workload did not go on: $(tail -n 3 "$log")"; drop "$id"; return
  fi
  local gap m=$store_dir/$name/manifest.json
  gap=$(grep -E '^iter [0-9]+ ok' "$log" | awk '{for (i = 1; i < NF; i++) if ($i == "t") t = $(i + 1);
    if (p != "") { d = t - p; if (d > g) g = d } p = t} END {printf "%.2f", g}')
  local gc cd rs gr pk floor
  gc=$(json_num "$m" gpu_checkpoint); cd=$(json_num "$m" criu_dump); rs=$(json_num "$m" resume)
  gr=$(json_num "$m" gpu_restore); pk=$(json_num "$m" package)
  floor=$(awk -v a="$gc" -v b="$cd" -v c="$gr" 'BEGIN {printf "%.2f", (a + b + c) / 1000}')
  say "PASS: leave-running $gib GiB: command $(sub "$t1" "$t0") s; workload stood still $gap s (longest gap between iterations, 0.2 s apart normally); GPU checkpoint $gc ms + CRIU dump $cd ms + GPU restore $gr ms = $floor s; resume $rs ms; packaging $pk ms $([ -n "$rs" ] && echo "after it went on" || echo "while it stood still (a build that resumes after the publish)")"
  [ -f "$out/downtime.tsv" ] || printf 'build\tGiB\tcommand_s\tdowntime_s\tgpu_checkpoint_ms\tcriu_dump_ms\tresume_ms\tgpu_restore_ms\tfloor_s\tpackage_ms\n' >"$out/downtime.tsv"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$gib" "$(sub "$t1" "$t0")" "$gap" "$gc" "$cd" "$rs" "$gr" "$floor" "$pk" >>"$out/downtime.tsv"
  cp "$m" "$out/$id.manifest.json" 2>/dev/null
  drop "$id"
  kyb images rm "$name" >/dev/null 2>&1 || rm -rf "${store_dir:?}/$name"
}

[ "$cpu_only" -eq 1 ] && workloads=counter
if [ "$rollback" != only ]; then
  for gib in $sizes; do
    for kind in $workloads; do run_case "$kind" "$gib"; done
  done
fi
[ "$rollback" = no ] || rollback_case
if [ "$cpu_only" -eq 0 ]; then
  for gib in $downtime; do
    if [ -n "$baseline_cli" ]; then
      cli=$baseline_cli; downtime_case "$gib" baseline; cli=$bin/kybernate
    fi
    downtime_case "$gib" current
  done
fi

{
  echo "# GPU checkpoint/restore on $(hostname) ($(date -u +%Y-%m-%d))"
  echo
  sed 's/^/    /' "$out/machine.txt"
  echo
  echo '| workload | VRAM GiB | result | GPU lock ms | GPU checkpoint ms | CRIU dump ms | packaging ms | checkpoint total s | image MiB | runc (CRIU) restore ms | GPU restore ms | GPU unlock ms | restore total s |'
  echo '|---|---|---|---|---|---|---|---|---|---|---|---|---|'
  tail -n +2 "$out/results.tsv" | awk -F'\t' '$1 != "rollback" {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 / 1048576, $10, $11, $12, $13} $1 == "rollback" {printf "| rollback (CRIU dump fails after GPU checkpoint) | %s | %s | | | | | | | | | | |\n", $2, $3}'
  if [ -f "$out/downtime.tsv" ]; then
    echo
    echo '| build | leave-running, vram GiB | command s | workload downtime s | GPU checkpoint ms | CRIU dump ms | resume ms | GPU restore ms | floor s (GPU ckpt + dump + GPU restore) | packaging ms (after the resume) |'
    echo '|---|---|---|---|---|---|---|---|---|---|'
    tail -n +2 "$out/downtime.tsv" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
  fi
} >"$out/summary.md"
cat "$out/summary.md"
# per-case files in one archive (the device tool brings back few files)
(cd "$out" && ls | grep -vE '^(run\.log|results\.tsv|downtime\.tsv|summary\.md|machine\.txt|setup\.log|cases\.tar\.gz)$' |
  tar -czf cases.tar.gz -T - --remove-files 2>/dev/null) || true
say "done: $failures failure(s)"
[ "$failures" -eq 0 ]
