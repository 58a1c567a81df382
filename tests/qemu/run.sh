#!/usr/bin/env bash
# The QEMU VFIO harness (docs/testing.md "QEMU VFIO harness"): the driver's VFIO backend against a real Linux
# vfio-pci in a QEMU guest (TCG, emulated Intel IOMMU), programming the software model that runs on this host.
#
#   host: ironlb-sim serve --no-dma --small --bar /dev/shm/ironlb-qemu-PID.bar      (the device)
#   guest: ivshmem-plain over that file (BAR2 = the model's BAR0), QEMU edu, a PCIe root port
#     /init: load VFIO, bind edu + ivshmem to vfio-pci (`ironlb device bind`), run driver/tests/vfio_guest.rs (--ignored),
#            ironlb run --once --backend vfio:ADDR@2 --manifests /manifests
#   host: ironlb dump --backend sim-shm:PREFIX == ironlb dump --manifests (same LBs, targets, bucket arrays);
#         a pcap replayed through a copy of the served model's tables (ironlb replay --backend sim-shm:PREFIX)
#         goes to exactly the device's targets.
# Boot 1 programs the example manifests; boot 2 changes one target, and its `ironlb run` must adopt the device
# and update only that LB.
# Boot 3 (given a package in IRONLB_QEMU_DEB; required under CI=true) boots the host's own userland with systemd as
# PID 1 and runs the Debian package's unit against a fresh device (tests/qemu/init-systemd, harness-systemd.sh).
#
# Exit status: 0 when everything passed. Bounded in time (QEMU boots under `timeout`); the model, QEMU and the
# /dev/shm files are cleaned up on every exit path. Downloads and built images are cached in $IRONLB_QEMU_CACHE
# (default: $CARGO_TARGET_DIR/qemu-harness, i.e. target/qemu-harness).
#
# Environment: IRONLB_QEMU_BOOT_TIMEOUT (seconds per boot, default 300), IRONLB_QEMU_KEEP=1 (keep the work dir).
# Under CI=true a missing prerequisite fails the run; elsewhere too (this script never skips).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CACHE="${IRONLB_QEMU_CACHE:-$TARGET_DIR/qemu-harness}"
BOOT_TIMEOUT="${IRONLB_QEMU_BOOT_TIMEOUT:-300}"
GUEST_TRIPLE=x86_64-unknown-linux-gnu
START=$SECONDS

log() { printf '[qemu %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
  printf '[qemu %3ds] FAILED: %s\n' "$((SECONDS - START))" "$*" >&2
  exit 1
}

# --- cleanup on every exit path ------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/ironlb-qemu.XXXXXX)
SHM=/dev/shm/ironlb-qemu-$$
MODEL_PID=""
cleanup() {
  local rc=$?
  if [ -n "$MODEL_PID" ] && kill -0 "$MODEL_PID" 2>/dev/null; then
    kill "$MODEL_PID" 2>/dev/null || true
    wait "$MODEL_PID" 2>/dev/null || true
  fi
  rm -f "$SHM".bar "$SHM".host
  if [ "${IRONLB_QEMU_KEEP:-0}" = 1 ]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ---------------------------------------------------------------------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
[ -x /bin/busybox ] && file_is_static=$(ldd /bin/busybox 2>&1 | grep -c "not a dynamic" || true) || file_is_static=0
[ "$file_is_static" = 1 ] || need_pkgs+=(busybox-static)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    die "missing ${need_pkgs[*]}: install them (apt-get install ${need_pkgs[*]}) or run as root"
  fi
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 still missing after installing qemu-system-x86"
[ "$(id -u)" = 0 ] || die "must run as root (apt-get download of the guest kernel, /dev/shm files)"
if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx "$GUEST_TRIPLE" ||
    die "Rust target $GUEST_TRIPLE not installed (rustup target add $GUEST_TRIPLE)"
fi

# --- guest kernel and VFIO modules (cached per kernel version) -------------------------------------------------
KVER=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*\)$/\1/p' | head -1)
[ -n "$KVER" ] || die "cannot resolve the kernel version: apt-cache depends linux-image-amd64 (run apt-get update)"
KDIR="$CACHE/kernel/$KVER"
MODS=(kernel/virt/lib/irqbypass kernel/drivers/vfio/vfio_virqfd kernel/drivers/vfio/vfio
  kernel/drivers/vfio/vfio_iommu_type1 kernel/drivers/vfio/pci/vfio-pci-core kernel/drivers/vfio/pci/vfio-pci)
# Boot 3 (systemd) mounts the host's root over virtio-9p under an overlay.
ROOT_MODS=(kernel/drivers/virtio/virtio kernel/drivers/virtio/virtio_ring kernel/drivers/virtio/virtio_pci_legacy_dev
  kernel/drivers/virtio/virtio_pci_modern_dev kernel/drivers/virtio/virtio_pci kernel/net/9p/9pnet
  kernel/net/9p/9pnet_virtio kernel/fs/netfs/netfs kernel/fs/fscache/fscache kernel/fs/9p/9p
  kernel/fs/overlayfs/overlay)
MODS+=("${ROOT_MODS[@]}")
if [ ! -f "$KDIR/ok-v2" ]; then
  log "fetching guest kernel linux-image-$KVER"
  rm -rf "$KDIR" && mkdir -p "$KDIR/modules" "$WORK/deb"
  (cd "$WORK/deb" && timeout 600 apt-get download -qq "linux-image-$KVER" 2>&1 | grep -v "unsandboxed" || true)
  deb=$(ls "$WORK"/deb/linux-image-*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "apt-get download linux-image-$KVER produced no .deb"
  mkdir -p "$WORK/deb/x"
  dpkg-deb -x "$deb" "$WORK/deb/x"
  cp "$WORK/deb/x/boot/vmlinuz-$KVER" "$KDIR/vmlinuz"
  for m in "${MODS[@]}"; do
    base="$WORK/deb/x/lib/modules/$KVER/$m"
    name=$(basename "$m")
    if [ -f "$base.ko" ]; then
      cp "$base.ko" "$KDIR/modules/$name.ko"
    elif [ -f "$base.ko.xz" ]; then
      xz -dc "$base.ko.xz" >"$KDIR/modules/$name.ko"
    elif [ -f "$base.ko.zst" ]; then
      zstd -qdc "$base.ko.zst" >"$KDIR/modules/$name.ko"
    elif [ "$name" = vfio_virqfd ] || [[ " ${ROOT_MODS[*]} " == *" $m "* ]]; then
      : # built in (vfio_virqfd into vfio.ko in later kernels; a root-filesystem module into the kernel)
    else
      die "module $m not in linux-image-$KVER"
    fi
  done
  rm -rf "$WORK/deb"
  touch "$KDIR/ok-v2"
fi

# --- binaries: host (model, CLI) and static guest binaries in their own target dir ------------------------------
log "building host binaries (ironlb, ironlb-sim)"
cargo build --quiet -p ironlb-runtime --bin ironlb -p ironlb-sim --bin ironlb-sim
HOSTBIN="$TARGET_DIR/debug"
log "building static guest binaries (ironlb, vfio_guest tests) in $CACHE/cargo"
GUEST_ENV=(env RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_DEV_DEBUG=0
  CARGO_TARGET_DIR="$CACHE/cargo")
"${GUEST_ENV[@]}" cargo build --quiet --target "$GUEST_TRIPLE" -p ironlb-runtime --bin ironlb
GUEST_TEST=$("${GUEST_ENV[@]}" cargo test --quiet --target "$GUEST_TRIPLE" -p ironlb-driver --test vfio_guest \
  --no-run --message-format=json |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "vfio_guest" and m.get("executable"):
        print(m["executable"])')
[ -x "$GUEST_TEST" ] || die "no vfio_guest test executable built"
GUEST_IRONLB="$CACHE/cargo/$GUEST_TRIPLE/debug/ironlb"
for b in "$GUEST_TEST" "$GUEST_IRONLB"; do
  ldd "$b" 2>&1 | grep -qE "not a dynamic|statically linked" || die "$b is not statically linked"
done

# --- initramfs: a base archive plus a per-boot archive (manifests, state) --------------------------------------
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"/{bin,lib/modules,proc,sys,dev,tmp}
cp /bin/busybox "$ROOTFS/bin/busybox"
cp "$ROOT/tests/qemu/init" "$ROOTFS/init"
for m in "${MODS[@]}"; do
  name=$(basename "$m")
  [[ " ${ROOT_MODS[*]} " == *" $m "* ]] && continue
  [ -f "$KDIR/modules/$name.ko" ] && cp "$KDIR/modules/$name.ko" "$ROOTFS/lib/modules/"
done
cp "$GUEST_TEST" "$ROOTFS/bin/vfio_guest"
cp "$GUEST_IRONLB" "$ROOTFS/bin/ironlb"
strip "$ROOTFS/bin/vfio_guest" "$ROOTFS/bin/ironlb" 2>/dev/null || true
(cd "$ROOTFS" && find . -print0 | cpio --null -o -H newc --quiet) >"$WORK/base.cpio"

# --- the manifests of the two boots ----------------------------------------------------------------------------
# a: the examples. b: one target of the public LB changes its underlay address (db-2: fd00:1::2 -> fd00:1::22).
mkdir -p "$WORK/a" "$WORK/b"
cp "$ROOT"/examples/*.yaml "$WORK/a/"
cp "$ROOT"/examples/*.yaml "$WORK/b/"
sed -i 's/underlayAddress: "fd00:1::2"$/underlayAddress: "fd00:1::22"/' "$WORK/b/network-interfaces.yaml"
cmp -s "$WORK/a/network-interfaces.yaml" "$WORK/b/network-interfaces.yaml" &&
  die "examples/network-interfaces.yaml no longer has db-2 at fd00:1::2: update the harness's change"
python3 "$ROOT/tests/qemu/check.py" flows "$WORK/flows.pcap" 203.0.113.10 80 300

# --- the device: the model serving its BAR from /dev/shm -------------------------------------------------------
start_model() {
  rm -f "$SHM".bar "$SHM".host
  "$HOSTBIN/ironlb-sim" serve --no-dma --small --bar "$SHM.bar" 2>"$WORK/model.log" &
  MODEL_PID=$!
  for _ in $(seq 100); do
    # Ready: ID (offset 0) reads "ILB1" and STATUS.READY (offset 0x44, bit 0) is set.
    if [ -s "$SHM.bar" ] && [ "$(od -An -tx4 -N4 "$SHM.bar" | tr -d ' ')" = 31424c49 ] &&
      [ $((0x$(od -An -tx4 -j68 -N4 "$SHM.bar" | tr -d ' ') & 1)) = 1 ]; then
      break
    fi
    kill -0 "$MODEL_PID" 2>/dev/null || die "ironlb-sim serve exited: $(cat "$WORK/model.log")"
    sleep 0.1
  done
  [ "$(od -An -tx4 -N4 "$SHM.bar" | tr -d ' ')" = 31424c49 ] || die "model did not become ready in 10 s"
  log "model serving $SHM.bar (pid $MODEL_PID, no DMA: mailbox only)"
}
stop_model() {
  kill "$MODEL_PID" 2>/dev/null || true
  wait "$MODEL_PID" 2>/dev/null || true
  MODEL_PID=""
}
start_model

# qemu_boot N INITRD MEMORY [QEMU ARGS...]: one guest boot; passes when the guest reports through isa-debug-exit.
qemu_boot() {
  local n=$1 initrd=$2 mem=$3 per="$WORK/boot$1"
  shift 3
  local rc=0 t0=$SECONDS
  timeout --kill-after=10 "$BOOT_TIMEOUT" qemu-system-x86_64 \
    -accel tcg -machine q35,kernel-irqchip=split -cpu max -m "$mem" -smp 1 \
    -device intel-iommu,intremap=on \
    -device edu \
    -object memory-backend-file,id=shm0,mem-path="$SHM.bar",size=64K,share=on \
    -device ivshmem-plain,memdev=shm0 \
    -device pcie-root-port,id=rp0,chassis=1 \
    -device isa-debug-exit,iobase=0xf4,iosize=0x01 \
    "$@" \
    -kernel "$KDIR/vmlinuz" -initrd "$initrd" \
    -display none -monitor none -no-reboot \
    -serial file:"$per/console.log" -serial file:"$per/state.b64" </dev/null >"$per/qemu.log" 2>&1 || rc=$?
  grep -E "IRONLB-GUEST|IRONLB-SYSTEMD|bound to|test result:|^test |synced in|panicked|error|DMAR faults|edu buffer" \
    "$per/console.log" | sed 's/\r$//' | sed 's/^/  guest| /' || true
  if [ "$rc" != 99 ]; then
    echo "---- guest console (boot $n) ----" >&2
    sed 's/\r$//' "$per/console.log" >&2 || true
    echo "---- qemu ----" >&2
    cat "$per/qemu.log" >&2 || true
    [ "$rc" = 124 ] && die "boot $n timed out after ${BOOT_TIMEOUT}s"
    die "boot $n: guest failed (QEMU exit $rc; 99 = pass)"
  fi
  log "boot $n passed in $((SECONDS - t0)) s"
}

boot() { # boot N MANIFEST_DIR
  local n=$1 manifests=$2 per="$WORK/boot$1"
  mkdir -p "$per/root/manifests" "$per/root/state"
  cp "$manifests"/*.yaml "$per/root/manifests/"
  [ -d "$WORK/state" ] && cp -a "$WORK/state/." "$per/root/state/"
  (cd "$per/root" && find . -print0 | cpio --null -o -H newc --quiet) >"$per/extra.cpio"
  cat "$WORK/base.cpio" "$per/extra.cpio" >"$per/initrd"
  log "boot $n: QEMU (TCG, intel-iommu, edu, ivshmem-plain over $SHM.bar), manifests $(basename "$manifests")"
  qemu_boot "$n" "$per/initrd" 512M \
    -append "console=ttyS0 intel_iommu=on no_timer_check quiet loglevel=3 panic=-1 rdinit=/init"
  rm -rf "$WORK/state" && mkdir -p "$WORK/state"
  tr -d '\r' <"$per/state.b64" | base64 -d | tar -x -C "$WORK/state" ||
    die "boot $n: could not restore the guest's state directory from the second serial port"
}

# boot_systemd N MANIFEST_DIR DEB: the host's own userland (read-only over virtio-9p, under a tmpfs overlay) booted
# with systemd as PID 1; tests/qemu/harness-systemd.sh installs DEB and runs the packaged unit against the device.
boot_systemd() {
  local n=$1 manifests=$2 deb=$3 per="$WORK/boot$1"
  [ -x /lib/systemd/systemd ] || die "boot $n needs systemd on this host (apt-get install systemd)"
  mkdir -p "$per/root/bin" "$per/root/lib/modules" "$per/root/proc" "$per/root/sys" "$per/root/dev" \
    "$per/root/harness/manifests"
  cp /bin/busybox "$per/root/bin/busybox"
  cp "$ROOT/tests/qemu/init-systemd" "$per/root/init"
  cp "$KDIR"/modules/*.ko "$per/root/lib/modules/"
  cp "$ROOT/tests/qemu/harness-systemd.sh" "$per/root/harness/"
  cp "$deb" "$per/root/harness/ironlb.deb"
  cp "$manifests"/*.yaml "$per/root/harness/manifests/"
  (cd "$per/root" && find . -print0 | cpio --null -o -H newc --quiet) >"$per/initrd"
  log "boot $n: QEMU with systemd as PID 1 (host root over virtio-9p), package $(basename "$deb")"
  qemu_boot "$n" "$per/initrd" 1G \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -append "console=ttyS0 intel_iommu=on no_timer_check quiet loglevel=3 panic=-1 rdinit=/init systemd.show_status=0"
}

host_checks() { # host_checks N MANIFEST_DIR [check.py forwarded flags...]
  local n=$1 manifests=$2 per="$WORK/boot$1"
  shift 2
  "$HOSTBIN/ironlb" dump --backend "sim-shm:$SHM" -o json >"$per/device.json" ||
    die "boot $n: ironlb dump --backend sim-shm:$SHM failed"
  "$HOSTBIN/ironlb" dump --manifests "$manifests" -o json >"$per/manifests.json" 2>"$per/dump.err" ||
    die "boot $n: ironlb dump --manifests failed: $(cat "$per/dump.err")"
  python3 "$ROOT/tests/qemu/check.py" same-tables "$per/device.json" "$per/manifests.json" ||
    die "boot $n: the device does not hold what the manifests program"
  "$HOSTBIN/ironlb" replay --backend "sim-shm:$SHM" --ingress public --in "$WORK/flows.pcap" \
    --out "$per/out.pcap" --verdicts "$per/verdicts.jsonl" 2>"$per/replay.err" | sed 's/^/  /' ||
    die "boot $n: ironlb replay failed: $(cat "$per/replay.err")"
  python3 "$ROOT/tests/qemu/check.py" forwarded "$per/verdicts.jsonl" "$per/device.json" 203.0.113.10 "$@" ||
    die "boot $n: replayed flows do not go to the device's targets"
}

boot 1 "$WORK/a"
grep -q "synced in .*: 2 created, 0 updated, 0 removed, 0 unchanged, 0 errors" "$WORK/boot1/console.log" ||
  die "boot 1: ironlb run --once did not create the 2 example LBs"
host_checks 1 "$WORK/a" --has fd00:1::2 --lacks fd00:1::22

boot 2 "$WORK/b"
# The second runtime adopted the device's tables and rewrote only the LB whose target changed.
grep -q "synced in .*: 0 created, 1 updated, 0 removed, 1 unchanged, 0 errors" "$WORK/boot2/console.log" ||
  die "boot 2: expected the adopted device to need exactly 1 update (see the console above)"
host_checks 2 "$WORK/b" --has fd00:1::22 --lacks fd00:1::2

# Boot 3: the Debian package's unit under a real systemd, on a fresh device (the model restarted: a device that
# holds load balancers and a state directory without them is refused, issue 12). The package comes from
# packaging/build-deb; scripts/test passes it under CI=true or IRONLB_SYS_TESTS=1.
DEB="${IRONLB_QEMU_DEB:-}"
if [ -z "$DEB" ]; then
  [ "${CI:-}" = true ] && die "CI=true but no package for boot 3: set IRONLB_QEMU_DEB (scripts/test does)"
  log "boot 3 (the package's unit under systemd) not run: no package (IRONLB_QEMU_DEB=target/debian/ironlb_*.deb)"
  log "PASS: boots 1 and 2 and their host checks ($((SECONDS - START)) s)"
  exit 0
fi
[ -f "$DEB" ] || die "IRONLB_QEMU_DEB=$DEB: no such file"
stop_model
start_model
boot_systemd 3 "$WORK/a" "$DEB"
host_checks 3 "$WORK/a" --has fd00:1::2 --lacks fd00:1::22

log "PASS: all three guest boots and all host checks ($((SECONDS - START)) s)"
