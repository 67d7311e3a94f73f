#!/usr/bin/env bash
# Builds watchword_VERSION_ARCH.deb from this checkout, on a Debian machine with the Swift
# toolchain; every other host installs it with `apt install ./watchword_*.deb` and needs
# no compiler. Needs no root (dpkg-deb --root-owner-group).
#
#   install/build-deb.sh [OUTDIR]     (default: the top of the checkout)
#
# The version comes from the top-level VERSION file, which must match the first entry of
# install/debian/changelog. Packaging files: install/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=$(realpath -m "${1:-$top}")

die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

command -v swift >/dev/null || die "Swift is not on PATH (https://www.swift.org/install/linux/)"
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev; or bash install/deps.sh)"
done

version=$(tr -d '[:space:]' <VERSION)
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "VERSION holds '$version', not a Debian version"
changelog=$(sed -n '1s/^watchword (\([^)]*\)).*/\1/p' install/debian/changelog)
[ "$changelog" = "$version" ] ||
    die "VERSION says $version but install/debian/changelog starts with ${changelog:-nothing}: add an entry for $version"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
# Reproducible timestamps: the last commit's, else now.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

say "Building $version for $arch (release, static Swift runtime)"
# Concrete generic types' metadata through direct accessor calls instead of mangled names
# that the runtime demangles at first use: every helper is a new process, so it paid that
# at every login (120 k of 885 k instructions, about 0.3 ms; BENCHMARKS.md).
swiftflags=(-Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors)
swift build -c release --static-swift-stdlib "${swiftflags[@]}" --product watchword
swift build -c release --static-swift-stdlib "${swiftflags[@]}" --product watchword-helper
bin=$(swift build -c release --show-bin-path)
# The helper the module runs at every login, linked fully statically: it starts like a C
# program. It hands SMS, fleet, exempt_group and QR-code logins to the one above, installed
# beside it as watchword-helper-dynamic (docs/helper-protocol.md, "Two builds").
# Linked by lld (the toolchain's) in the order of install/watchword-helper.order: the
# functions and data one login touches sit together, so a login faults in fewer pages
# (145 -> 94 page faults, 0.15 ms; BENCHMARKS.md). The order changes where things are, not
# what the program does; names the build no longer has are skipped. Regenerate the file
# with Benchmarks/helper_order.py when the login path changes.
order=$PWD/install/watchword-helper.order
swift build -c release --static-swift-stdlib -Xswiftc -static-executable -Xswiftc -DWATCHWORD_STATIC_HELPER \
    "${swiftflags[@]}" -Xswiftc -use-ld=lld -Xlinker "--symbol-ordering-file=$order" \
    -Xlinker --no-warn-symbol-ordering --product watchword-helper --scratch-path .build-static
static_bin=$(swift build -c release --scratch-path .build-static --show-bin-path)
nm --defined-only "$static_bin/watchword-helper" | awk 'NR == FNR { have[$3] = 1; next } ($1 in have) { n++ } END {
    printf "==> install/watchword-helper.order: %d of its %d names are in the static helper%s\n", n, FNR,
        (n < FNR * 0.9 ? " (stale: regenerate it with Benchmarks/helper_order.py)" : "") }' - "$order"
make -s -C pam clean all

say "Staging"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
# Where Debian 12's libpam-modules ships pam_unix.so and libpam looks: /lib, not /usr/lib.
# (Merged /usr makes them one directory, but dpkg knows paths by name: shipping in the
# same one as libpam-modules keeps `dpkg -S` and removal from tripping over the alias.)
pamdir=/lib/$multiarch/security
install -d -m 0755 "$root/usr/sbin" "$root/usr/libexec/watchword" "$root$pamdir" \
    "$root/usr/share/watchword" "$root/usr/share/doc/watchword" "$root/usr/share/lintian/overrides"
install -d -m 0700 "$root/etc/watchword" # the helper refuses any other mode (conffile's directory)
install -m 0755 "$bin/watchword" "$root/usr/sbin/watchword"
install -m 0755 "$static_bin/watchword-helper" "$root/usr/libexec/watchword/watchword-helper"
install -m 0755 "$bin/watchword-helper" "$root/usr/libexec/watchword/watchword-helper-dynamic"
install -m 0644 pam/pam_watchword.so "$root$pamdir/pam_watchword.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/sbin/watchword" "$root/usr/libexec/watchword/watchword-helper" \
    "$root/usr/libexec/watchword/watchword-helper-dynamic" "$root$pamdir/pam_watchword.so"
install -m 0600 install/config.toml "$root/etc/watchword/config.toml"
install -m 0644 install/pam.d-sshd install/pam.d-sudo install/sshd_config-watchword.conf "$root/usr/share/watchword/"
# Man pages and completions where Debian's man, bash-completion and zsh look.
MANDIR=$root/usr/share/man BASH_COMPLETION_DIR=$root/usr/share/bash-completion/completions \
    ZSH_COMPLETION_DIR=$root/usr/share/zsh/vendor-completions bash install/docs.sh install "$bin/watchword"
gzip -9n "$root"/usr/share/man/man*/*
# bash-completion sources the file: the generator's #! line means nothing there.
sed -i '1{/^#!/d}' "$root/usr/share/bash-completion/completions/watchword"
install -m 0644 install/debian/copyright "$root/usr/share/doc/watchword/copyright"
# A native package (the packaging lives in the repository; no Debian revision): changelog.gz.
gzip -9n <install/debian/changelog >"$root/usr/share/doc/watchword/changelog.gz"
chmod 0644 "$root/usr/share/doc/watchword/changelog.gz"
install -m 0644 install/debian/lintian-overrides "$root/usr/share/lintian/overrides/watchword"

say "Control files"
install -d -m 0755 "$root/DEBIAN"
install -m 0644 install/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 install/debian/postinst install/debian/prerm install/debian/postrm "$root/DEBIAN/"
# Depends from what the programs and the module really load (dpkg-shlibdeps wants a
# debian/control beside it). libqrencode4 is dlopen()ed for every enrollment's QR code:
# control.in adds it to Depends. libcurl4 and libpq5 are dlopen()ed only for SMS and a
# fleet: Recommends and Suggests in control.in.
mkdir -p "$stage/shlibs/debian"
printf 'Source: watchword\n\nPackage: watchword\nArchitecture: any\n' >"$stage/shlibs/debian/control"
depends=$(cd "$stage/shlibs" && dpkg-shlibdeps -O \
    "$root/usr/sbin/watchword" "$root/usr/libexec/watchword/watchword-helper-dynamic" "$root$pamdir/pam_watchword.so" |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"
# Linked in statically: glibc (the static helper) and libcrypto (both helpers).
built_using=$(dpkg-query -W -f='${source:Package} (= ${source:Version}), ' libc6-dev libssl-dev | sed 's/, $//')
size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@BUILT_USING@/$built_using/" \
    install/debian/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb="$out/watchword_${version}_${arch}.deb"
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
say "Built $deb"
echo "  Depends: $depends"
