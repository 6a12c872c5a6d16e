# amd64 (PC / QEMU q35): UEFI, a standalone GRUB on the ESP counting boot attempts.
# Sourced by image/build; uses its variables ($root, $work, $out, $here, $data_mb, $slot_mb).
# shellcheck shell=bash disable=SC2034  # the variables are read by image/build
arch_tools=""
# The image's own GRUB (trixie: 2.12) builds the EFI binary on the ESP, so the boot loader
# is the release's version, not the build host's, and is listed in the SBOM.
arch_packages="grub-common,grub-efi-amd64-bin"
arch_mountpoints="boot/efi"   # the ESP, for RAUC's grubenv
arch_components="main"
arch_pip_platforms="manylinux2014_x86_64 manylinux_2_28_x86_64"

arch_prepare_host() { :; }

arch_data() { :; }   # GRUB keeps its boot counters in grubenv on the ESP

arch_disk() { # disk
    local disk="$1"
    cp "$here/grub.cfg" "$root/tmp/grub.cfg"
    chroot "$root" grub-mkstandalone -O x86_64-efi -o /tmp/BOOTX64.EFI \
        --modules="part_gpt fat squash4 linux normal test loadenv echo reboot sleep search" \
        "boot/grub/grub.cfg=/tmp/grub.cfg"
    chroot "$root" grub-editenv /tmp/grubenv create
    chroot "$root" grub-editenv /tmp/grubenv set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
    mv "$root/tmp/BOOTX64.EFI" "$root/tmp/grubenv" "$work/"
    truncate -s 64M "$work/esp.vfat"
    mkfs.vfat -n ESP "$work/esp.vfat" >/dev/null
    mmd -i "$work/esp.vfat" ::/EFI ::/EFI/BOOT
    mcopy -i "$work/esp.vfat" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$work/esp.vfat" "$work/grubenv" ::/grubenv
    rm -f "$disk"
    truncate -s $(( (1 + 64 + 2 * slot_mb + data_mb + 4) * 1048576 )) "$disk"  # + GPT backup and alignment
    sgdisk -n 1:1M:+64M -t 1:ef00 -c 1:esp \
           -n 2:0:+${slot_mb}M -t 2:8300 -c 2:rootfs_a \
           -n 3:0:+${slot_mb}M -t 3:8300 -c 3:rootfs_b \
           -n 4:0:+${data_mb}M -t 4:8300 -c 4:data "$disk" >/dev/null
    put "$disk" 1 "$work/esp.vfat"; put "$disk" 2 "$out/rootfs.sqfs"; put "$disk" 4 "$out/data.ext4"
}

arch_bundle() { :; }   # the kernel lives in the slot: one rootfs image is the whole release
