#!/usr/bin/env bash
# Prepares .device/, what tests/gpu/run-on-device.sh needs on the GPU machine
# (which has no package registry), within the device tool's 64 MiB carry:
#
#   .device/bundle-gpu/  the offline runtime bundle (scripts/setup --bundle)
#                        without the packages that machine does not need:
#                        iptables/nft (CRIU's nftables network lock uses the
#                        libnftables of CRIU's own prefix; the test node runs
#                        no CNI) and libicu72 (only Debian's libxml2 needs
#                        it, and the machine has its own libxml2)
#   .device/build/       the five binaries and the static test programs
#   .device/busybox      busybox-static for the test image
#   .device/gpu/         vram_check built for the H200 (sm_90) and torch_check.py
#
# Usage (Debian 12, root, after scripts/setup and scripts/build):
#   tests/gpu/prepare-carry.sh [--bundle DIR]   (default: .device/bundle, made if missing)
# then carry ".device" with the device tool and run tests/gpu/run-on-device.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
src=$repo/.device/bundle
case "${1:-}" in
  --bundle) src=$2 ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "prepare-carry: unknown option '$1'" >&2; exit 2 ;;
esac
dev=$repo/.device
mkdir -p "$dev"
[ -f "$src/MANIFEST" ] || scripts/setup --bundle "$src"

# 1. the slim bundle: MANIFEST and SHA256SUMS rewritten for what stays
out=$dev/bundle-gpu
rm -rf "$out"
mkdir -p "$out/debs"
drop_pkg() { # ROLE FILE -> 0 when the package stays out
  case "$1" in netfilter) return 0 ;; esac
  case "$2" in debs/libicu72_*) return 0 ;; esac
  return 1
}
while IFS= read -r line; do
  case "$line" in
    '#'*) printf '%s\n' "$line" ;;
    *)
      role=${line%% *}
      file=${line##* }
      case "$file" in
        debs/*) drop_pkg "$role" "$file" && continue
                cp "$src/$file" "$out/$file" ;;
        *) cp -a "$src/$file" "$out/$file" ;;
      esac
      printf '%s\n' "$line" ;;
  esac
done <"$src/MANIFEST" >"$out/MANIFEST"
for f in README.txt setup; do [ -e "$src/$f" ] && cp -a "$src/$f" "$out/"; done
(cd "$out" && find debs -type f | sort | xargs sha256sum >SHA256SUMS)
if grep -q ' setup$' "$src/SHA256SUMS" 2>/dev/null; then
  (cd "$out" && sha256sum setup >>SHA256SUMS)
fi

# 2. binaries and test programs
rm -rf "$dev/build"
mkdir -p "$dev/build/cmd" "$dev/build/tests/programs"
# only what run-on-device.sh uses: the CLI and the runtime (the carry limit is 64 MiB)
cp -a build/cmd/kybernate build/cmd/kybernate-runc "$dev/build/cmd/"
find "$dev/build/cmd" -maxdepth 1 -name '*.p' -exec rm -rf {} +
cp -a build/tests/programs/counter build/tests/programs/sleeper "$dev/build/tests/programs/"
cp /bin/busybox "$dev/busybox"

# 3. the GPU workloads
mkdir -p "$dev/gpu"
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$nvcc" -O2 -arch=sm_90 -cudart static -o "$dev/gpu/vram_check" tests/gpu/vram_check.cu
cp tests/gpu/torch_check.py "$dev/gpu/"

du -sh "$out" "$dev/build" "$dev/busybox" "$dev/gpu"
total=$(du -sbc "$out" "$dev/build" "$dev/busybox" "$dev/gpu" | tail -n 1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
echo "prepare-carry: carry $((total / 1048576)) MiB + working tree $((tree / 1048576)) MiB (limit 64 MiB)"
