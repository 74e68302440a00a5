#!/usr/bin/env bash
# make bench-scale-vm: bench/scale inside a throwaway virtual machine, for a
# host whose hard RLIMIT_NOFILE is below what 100k idle connections need and
# cannot be raised (no CAP_SYS_RESOURCE, as in a container or this project's
# sandbox). In the guest bench/scale runs as root of a kernel of its own, so
# it raises the limit itself and holds the full counts.
#
# The guest is QEMU with Debian's kernel and an initramfs of BusyBox and a
# static build of bench/scale: no disk image, no network device; everything
# bench/scale does stays on the guest's loopback. The kernel and BusyBox
# come from Debian's packages (`apt-get download`, unpacked into bin/vm, not
# installed); QEMU and cpio are installed from Debian when missing.
#
# Knobs: SCALE_FLAGS (-only idle) for bench/scale; VM_ACCEL (tcg: software
# emulation, which works anywhere; kvm where /dev/kvm does: on this
# project's machines, themselves guests, the kernel hangs early in its boot
# under kvm); VM_MEM (8G); VM_CPUS (2); VM_TIMEOUT (3600 s). Under tcg,
# memory and the counts held are the guest's own, but latencies and times
# are the emulator's: read them only under kvm.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SCALE_FLAGS=${SCALE_FLAGS:--only idle}
VM_ACCEL=${VM_ACCEL:-tcg} VM_MEM=${VM_MEM:-8G} VM_CPUS=${VM_CPUS:-2} VM_TIMEOUT=${VM_TIMEOUT:-3600}
work=bin/vm
mkdir -p "$work"

if [ "$(uname -m)" != x86_64 ]; then
  echo "scale-vm: only x86_64 hosts (qemu-system-x86_64, Debian's amd64 kernel)" >&2
  exit 1
fi
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
if ((${#missing[@]})); then
  echo "scale-vm: installing ${missing[*]} from Debian" >&2
  apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

# Debian's kernel and BusyBox, once: linux-image-amd64 names the current
# kernel package, whose vmlinuz has what the guest needs built in (the
# serial console, initramfs, loopback).
if [ ! -f "$work/vmlinuz" ] || [ ! -f "$work/busybox" ]; then
  kernel=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  [ -n "$kernel" ] || { echo "scale-vm: apt-cache knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
  rm -rf "$work/deb" && mkdir -p "$work/deb/x"
  # apt-get download as root warns that its _apt user cannot write here.
  (cd "$work/deb" && apt-get download "$kernel" busybox-static 2> >(grep -v '^W: Download is performed unsandboxed' >&2))
  for deb in "$work"/deb/*.deb; do dpkg-deb -x "$deb" "$work/deb/x"; done
  cp "$work"/deb/x/boot/vmlinuz-* "$work/vmlinuz"
  cp "$work/deb/x/bin/busybox" "$work/busybox"
  rm -rf "$work/deb"
fi

# bench/scale, static, built as make builds (GOFLAGS carries the overlay).
CGO_ENABLED=0 $GO build -o "$work/scale" ./bench/scale

# The initramfs: /init mounts what bench/scale reads (/proc), brings up
# loopback, runs it with the flags from the kernel's command line and
# prints its exit status, which this script returns.
root=$work/initramfs
rm -rf "$root" && mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp "$work/busybox" "$work/scale" "$root/bin/"
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
# Loopback queues each packet for the receiving CPU, and drops what finds
# that queue full (1000 by default). Under emulation it drains slowly: a
# run of 100k TCP sessions at the default dropped about a million packets
# (/proc/net/softnet_stat), and one that took 20 minutes lost a fifth of
# its sessions, which a run as slow with this setting did not.
sysctl -qw net.core.netdev_max_backlog=100000
echo "vm: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
cd /tmp
flags=$(sed -n 's/.* scale="\([^"]*\)".*/\1/p' /proc/cmdline)
echo "vm: bench/scale $flags"
/bin/scale $flags
echo "vm: exit $?"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.gz"

case $VM_ACCEL in
tcg) accel=(-machine accel=tcg) ;;
kvm) accel=(-machine accel=kvm -cpu host) ;;
*) echo "scale-vm: VM_ACCEL is tcg or kvm, not $VM_ACCEL" >&2; exit 1 ;;
esac
log=$work/console.log
echo "scale-vm: booting ($VM_ACCEL, $VM_CPUS CPUs, $VM_MEM); the guest's console follows, and is kept in $log" >&2
# The firmware draws on the (hidden) display; the serial port carries only
# the kernel's console.
timeout "$VM_TIMEOUT" qemu-system-x86_64 "${accel[@]}" -smp "$VM_CPUS" -m "$VM_MEM" \
  -display none -serial stdio -monitor none -net none -no-reboot \
  -kernel "$work/vmlinuz" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 scale=\"$SCALE_FLAGS\"" | sed -u 's/\r$//' | tee "$log" || true
status=$(sed -n 's/^vm: exit \([0-9]*\)$/\1/p' "$log")
if [ -z "$status" ]; then
  echo "scale-vm: the guest stopped before bench/scale ended (see $log)" >&2
  exit 1
fi
if [ "$VM_ACCEL" = tcg ]; then
  echo "scale-vm: under software emulation (tcg), read the counts and the memory; the latencies and times are the emulator's" >&2
fi
exit "$status"
