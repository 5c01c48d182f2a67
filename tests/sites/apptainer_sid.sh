#!/usr/bin/env bash
# Apptainer where the distribution has no package for it (Debian 12): apptainer needs glibc >=
# 2.38, so it is installed into a debootstrapped Debian unstable root and run through bubblewrap
# (pivot_root; apptainer refuses a plain chroot as a "weak chroot"). Creates
# $ORCH_TEST_SITES/bin/{apptainer,singularity} (default /opt/orch-sites), which the image tests
# find (tests/sites/apptainer.py).
# Usage: tests/sites/apptainer_sid.sh install   (as root; ~35 s debootstrap + ~10 s apt)
# Needs: apt-get install -y --no-install-recommends debootstrap bubblewrap
set -euo pipefail
SITES=${ORCH_TEST_SITES:-/opt/orch-sites}
R=${APPT_ROOTFS:-$SITES/rootfs-sid}
BIN=${APPT_BIN:-$SITES/bin}
mirror() {
  # the machine's own Debian mirror (deb822 sources, else sources.list), else Debian's
  local uri
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
install_rootfs() {
  if [ ! -x "$R/usr/bin/apptainer" ]; then
    # a root left half-made by an interrupted run is started again
    # (debootstrap removes its own folder $R/debootstrap once it succeeded)
    if [ ! -x "$R/usr/bin/apt-get" ] || [ -d "$R/debootstrap" ]; then
      rm -rf "$R"; debootstrap --variant=minbase sid "$R" "$(mirror)"
    fi
    printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf /etc/hosts "$R/etc/"
    # unstable's Release file may be past its Valid-Until date on a mirror -> skip that check
    chroot "$R" /bin/sh -c 'apt-get -o Acquire::Check-Valid-Until=false update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -qq \
      --no-install-recommends apptainer e2fsprogs' >/dev/null
  fi
  # root needs a subuid range for `build --fakeroot` (the only way root can run %post here)
  grep -q '^root:' "$R/etc/subuid" 2>/dev/null || echo 'root:100000:65536' >> "$R/etc/subuid"
  grep -q '^root:' "$R/etc/subgid" 2>/dev/null || echo 'root:100000:65536' >> "$R/etc/subgid"
  mkdir -p "$BIN"
  cat > "$BIN/apptainer" <<WRAP
#!/bin/bash
# Runs the apptainer of $R with the host's /proc, /dev, /sys, /tmp, /var/tmp, /home, /root,
# passwd and group bound in, so paths and users look the same as on the host. A working folder
# elsewhere is bound too.
args=("\$@")
if [ "\$(id -u)" = 0 ] && [ \$# -gt 0 ]; then
  case "\$1" in
    # without CAP_SYS_RESOURCE, root-mode apptainer (which asks for all caps) fails: drop it
    run|exec|shell|test) args=("\$1" --drop-caps CAP_SYS_RESOURCE "\${@:2}");;
    # a root build with %post fails for the same reason; --fakeroot works
    build) [[ " \$* " == *" --fakeroot "* ]] || args=(build --fakeroot "\${@:2}");;
  esac
fi
here=()
case "\$PWD" in
  /|/tmp|/tmp/*|/var/tmp|/var/tmp/*|/home|/home/*|/root|/root/*) ;;
  *) here=(--bind "\$PWD" "\$PWD");;
esac
exec bwrap --bind $R / --bind /proc /proc --dev-bind /dev /dev --bind /sys /sys \\
  --bind /tmp /tmp --bind /var/tmp /var/tmp --bind /home /home --bind /root /root \\
  "\${here[@]}" \\
  --ro-bind /etc/passwd /etc/passwd --ro-bind /etc/group /etc/group \\
  --ro-bind /etc/hosts /etc/hosts --ro-bind /etc/resolv.conf /etc/resolv.conf \\
  --die-with-parent --chdir "\$PWD" /usr/bin/apptainer "\${args[@]}"
WRAP
  chmod 755 "$BIN/apptainer"
  ln -sf apptainer "$BIN/singularity"
  (cd / && "$BIN/apptainer" --version)
}
case ${1:-install} in
  install) install_rootfs;;
  *) echo "usage: $0 install"; exit 2;;
esac
