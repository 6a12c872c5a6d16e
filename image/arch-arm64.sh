# arm64 (Raspberry Pi 4 / 400 / CM4): the Pi firmware boots a FAT boot partition per slot;
# autoboot.txt on partition 1 picks A or B, the firmware's one-shot tryboot flag tries a
# new slot once (ota/tryboot.py is RAUC's backend). The root is built for arm64 through
# qemu-user-static. Sourced by image/build.
# shellcheck shell=bash disable=SC2034  # the variables are read by image/build
arch_tools="qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support arch-test:arch-test"
arch_packages="raspi-firmware,mtools"
arch_mountpoints=""   # the FAT partitions stay unmounted
arch_components="main,non-free-firmware"   # raspi-firmware: the GPU firmware blobs
arch_pip_platforms="manylinux2014_aarch64 manylinux_2_28_aarch64"
boot_mb=128

arch_prepare_host() {
    # dpkg, the maintainer scripts and the chroot steps run arm64 binaries via binfmt_misc.
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        # binfmt-support's database, else the systemd-binfmt line qemu-user-static ships
        # (the package may have been configured before binfmt_misc was mounted).
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 \
            || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register || true
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || {
        echo "image/build: cannot register qemu-aarch64 with binfmt_misc (needed to build arm64)" >&2; exit 1; }
}

arch_data() { # data-dir: slot B is empty on a new box; the tryboot backend must never pick it
    printf '{"pending": null, "tries": 0, "bad": ["B"]}' > "$1/rauc/tryboot.json"
}

_pi_boot_partition() { # out.vfat: firmware, device trees, kernel, initramfs, config.txt, cmdline.txt
    local vfat="$1" dtbs
    truncate -s "${boot_mb}M" "$vfat"
    mkfs.vfat -F 32 -n BOOT "$vfat" >/dev/null
    mcopy -i "$vfat" "$root"/usr/lib/raspi-firmware/start4*.elf "$root"/usr/lib/raspi-firmware/fixup4*.dat ::/
    dtbs=$(ls -d "$root"/usr/lib/linux-image-*/broadcom | head -1)
    mcopy -i "$vfat" "$dtbs"/bcm2711-*.dtb ::/
    mcopy -i "$vfat" "$root/vmlinuz" ::/vmlinuz
    mcopy -i "$vfat" "$root/initrd.img" ::/initrd.img
    cat > "$work/config.txt" <<'CONFIG'
# Raspberry Pi 4 firmware configuration for the bedside image (one per slot).
arm_64bit=1
kernel=vmlinuz
initramfs initrd.img followkernel
enable_uart=1
upstream_kernel=1
disable_overscan=1
CONFIG
    mcopy -i "$vfat" "$work/config.txt" ::/config.txt
    "${PYTHON:-$repo/.venv/bin/python}" -c 'import sys; from ota.tryboot import cmdline; sys.stdout.write(cmdline("A"))' \
        > "$work/cmdline.txt"
    mcopy -i "$vfat" "$work/cmdline.txt" ::/cmdline.txt
}

arch_disk() { # disk
    local disk="$1"
    _pi_boot_partition "$work/boot.vfat"
    truncate -s 16M "$work/config.vfat"
    mkfs.vfat -n CONFIG "$work/config.vfat" >/dev/null
    "${PYTHON:-$repo/.venv/bin/python}" -c 'import sys; from ota.tryboot import Autoboot; sys.stdout.write(Autoboot("A", "B").render())' \
        > "$work/autoboot.txt"
    mcopy -i "$work/config.vfat" "$work/autoboot.txt" ::/autoboot.txt
    rm -f "$disk"
    truncate -s $(( (1 + 16 + 2 * boot_mb + 2 * slot_mb + data_mb + 4) * 1048576 )) "$disk"
    sgdisk -n 1:1M:+16M -t 1:0700 -c 1:config \
           -n 2:0:+${boot_mb}M -t 2:0700 -c 2:boot_a \
           -n 3:0:+${boot_mb}M -t 3:0700 -c 3:boot_b \
           -n 4:0:+${slot_mb}M -t 4:8300 -c 4:rootfs_a \
           -n 5:0:+${slot_mb}M -t 5:8300 -c 5:rootfs_b \
           -n 6:0:+${data_mb}M -t 6:8300 -c 6:data "$disk" >/dev/null
    put "$disk" 1 "$work/config.vfat"; put "$disk" 2 "$work/boot.vfat"
    put "$disk" 4 "$out/rootfs.sqfs"; put "$disk" 6 "$out/data.ext4"
    # For QEMU (-M virt boots the kernel directly) and for inspection.
    cp "$root/vmlinuz" "$out/vmlinuz-arm64"; cp "$root/initrd.img" "$out/initrd-arm64.img"
}

arch_bundle() { # bundle-dir: the boot partition travels with its root file system
    cp "$work/boot.vfat" "$1/boot.vfat"
    printf '\n[image.boot]\nfilename=boot.vfat\n' >> "$1/manifest.raucm"
}
