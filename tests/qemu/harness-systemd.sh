#!/bin/bash
# Runs inside the QEMU harness's systemd boot (tests/qemu/init-systemd) as ironlb-harness.service, with systemd as
# PID 1: installs the Debian package, points /etc/ironlb/ironlb.toml at the ironlb device (ivshmem BAR2, the model
# served on the host), and checks the packaged unit as an operator's host runs it: `systemctl start` returns after the
# daemon's READY=1, its ExecStartPre `ironlb device bind` handed the device to vfio-pci and the group node to the
# ironlb group, the sandboxed daemon runs as user ironlb and programs every LoadBalancer, `systemctl reload` re-reads
# the manifests, `systemctl stop` stops it. The result goes to the console and to isa-debug-exit (port 0xf4):
# '1' = pass (QEMU exits 99), '2' = fail (QEMU exits 101).
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
H=/ironlb-harness
passed=0

# Every line carries the guest's uptime, so a slow step shows where the boot's time went.
say() { echo "IRONLB-SYSTEMD: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
finish() {
	echo "IRONLB-GUEST-RESULT: $1"
	if [ "$1" = PASS ]; then code='\061'; else code='\062'; fi
	printf "$code" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	systemctl poweroff --force --force
}
fail() {
	say "FAILED: $*"
	say "---- systemctl status ironlb ----"
	systemctl status --no-pager --lines=0 ironlb 2>&1 | sed 's/^/IRONLB-SYSTEMD:   /'
	say "---- journalctl -u ironlb ----"
	journalctl -u ironlb --no-pager -o cat 2>&1 | tail -40 | sed 's/^/IRONLB-SYSTEMD:   /'
	finish FAIL
}
ok() {
	passed=$((passed + 1))
	say "ok   $*"
}
# check WHAT CMD...: CMD must succeed.
check() {
	local what=$1
	shift
	"$@" >/tmp/harness.out 2>&1 || {
		sed 's/^/IRONLB-SYSTEMD:   /' /tmp/harness.out
		fail "$what"
	}
	ok "$what"
}
# wait_for WHAT SECONDS CMD...: CMD must succeed within SECONDS (polled every 0.2 s).
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for i in $(seq $((secs * 5))); do
		"$@" >/dev/null 2>&1 && { ok "$what"; return 0; }
		sleep 0.2
	done
	fail "$what (not within ${secs} s)"
}

[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
say "systemd $(systemctl --version | head -1 | cut -d' ' -f2) is PID 1"

# The ironlb device: the ivshmem function whose BAR2 is the model's BAR0.
IVSHMEM=""
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ]; then IVSHMEM=$(basename "$d"); fi
done
[ -n "$IVSHMEM" ] || fail "no ivshmem device (1af4:1110)"

# man-db's trigger would re-index every manual page of the host root (over 9p, under TCG: minutes) because the
# package ships pages; the index is not what is tested here. (Removed from the tmpfs overlay only.)
rm -f /var/lib/man-db/auto-update
check "dpkg -i the package" dpkg -i "$H/ironlb.deb"
check "the unit is known to systemd" systemctl cat ironlb.service
sed -i "s|^backend = .*|backend = \"vfio:$IVSHMEM@2\"|" /etc/ironlb/ironlb.toml
check "the config names the device" grep -q "^backend = \"vfio:$IVSHMEM@2\"$" /etc/ironlb/ironlb.toml
cp "$H"/manifests/*.yaml /etc/ironlb/manifests/

# Type=notify: `systemctl start` returns once the daemon sent READY=1 (or fails if it did not).
check "systemctl start ironlb (returns after READY=1)" systemctl start ironlb
check "ironlb.service is active" systemctl is-active --quiet ironlb
check "ExecStartPre bound $IVSHMEM to vfio-pci" \
	test "$(basename "$(readlink "/sys/bus/pci/devices/$IVSHMEM/driver")")" = vfio-pci
NODE=/dev/vfio/$(basename "$(readlink "/sys/bus/pci/devices/$IVSHMEM/iommu_group")")
check "the group node $NODE belongs to group ironlb, mode 660" \
	test "$(stat -c '%G %a' "$NODE")" = "ironlb 660"
PID=$(systemctl show -p MainPID --value ironlb)
check "the daemon (pid $PID) runs as user ironlb, not root" test "$(stat -c %U "/proc/$PID")" = ironlb
check "the daemon has no capabilities" sh -c "grep -q '^CapEff:[[:space:]]*0000000000000000$' /proc/$PID/status"
# Both example LoadBalancers programmed and Ready, read over the control socket as root.
wait_for "ironlb status: 2 LoadBalancers Ready" 60 \
	sh -c '[ "$(ironlb status --socket /run/ironlb/ironlb.sock | grep -c " Ready$")" -ge 2 ]'
check "ironlb status" sh -c 'ironlb status --socket /run/ironlb/ironlb.sock | sed "s/^/IRONLB-SYSTEMD:   /" >/dev/console'
check "the journal has the daemon's sync line and no colour codes" \
	sh -c 'journalctl -u ironlb --no-pager -o cat | grep -q " synced generation=" && ! journalctl -u ironlb --no-pager -o cat | grep -q "$(printf "\033")\["'

# Reload: SIGHUP re-reads the manifest directory; the daemon stays the same process and says RELOADING/READY.
rm /etc/ironlb/manifests/internal-loadbalancer.yaml
check "systemctl reload ironlb" systemctl reload ironlb
wait_for "after reload, the internal LoadBalancer is gone (1 Ready)" 60 \
	sh -c '[ "$(ironlb status --socket /run/ironlb/ironlb.sock | grep -c " Ready$")" -eq 1 ]'
check "reload kept the same process" test "$(systemctl show -p MainPID --value ironlb)" = "$PID"
cp "$H"/manifests/internal-loadbalancer.yaml /etc/ironlb/manifests/
check "systemctl reload ironlb (again)" systemctl reload ironlb
wait_for "after the second reload, 2 LoadBalancers Ready" 60 \
	sh -c '[ "$(ironlb status --socket /run/ironlb/ironlb.sock | grep -c " Ready$")" -ge 2 ]'

check "systemctl stop ironlb" systemctl stop ironlb
check "ironlb.service is inactive (a clean stop, not failed)" \
	test "$(systemctl show -p ActiveState --value ironlb)" = inactive
say "all $passed checks passed"
finish PASS
