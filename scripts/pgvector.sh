#!/usr/bin/env bash
# Builds and installs pgvector for PostgreSQL 15 from Debian's own source package of the next
# release (trixie): Debian 12 ships no pgvector for PG 15.  Called by scripts/deps.sh.
#
# - Silent no-op when /usr/share/postgresql/15/extension/vector.control exists.
# - The trixie deb-src line lives in a private apt directory (own sources list, lists dir and cache,
#   all in a temp dir that is removed afterwards); the system's apt sources, lists and caches are
#   not touched.  The mirror is the one the machine's own Debian sources already use.
# - Any failure (no network, no mirror found, build error) prints ONE warning line on stderr and
#   exits 0: hearth works without pgvector and says so.
set -uo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
CONTROL=/usr/share/postgresql/15/extension/vector.control
[[ -e $CONTROL ]] && exit 0

warn() { echo "deps.sh: warning: pgvector not installed ($*); hearth will run without vector search" >&2; exit 0; }

[[ -x $PG_CONFIG ]] || warn "postgresql-server-dev-15 is missing"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || warn "need root (or sudo) to install it"
  SUDO=sudo
fi

# One build at a time (parallel `make` invocations all call deps.sh); re-check after the lock.
{ exec 9>"${TMPDIR:-/tmp}/hearth-pgvector.lock" && flock -w 600 9; } 2>/dev/null || true
[[ -e $CONTROL ]] && exit 0

# The machine's Debian mirror: the URI of the first enabled source for this release's codename, in
# one-line (*.list) or deb822 (*.sources) format.  Disabled/renamed files are ignored, like apt does.
# shellcheck disable=SC1091
codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
[[ -n $codename ]] || warn "cannot read VERSION_CODENAME from /etc/os-release"
srcfiles=()
[[ -f /etc/apt/sources.list ]] && srcfiles+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] && srcfiles+=("$f")
done
mirror=""
for f in "${srcfiles[@]}"; do
  if [[ $f == *.sources ]]; then
    mirror=$(awk -v cn="$codename" 'BEGIN { RS = ""; FS = "\n" }
      { types = uris = suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          line = $i; if (line ~ /^[ \t]*#/) continue
          k = line; sub(/:.*/, "", k); v = line; sub(/^[^:]*:[ \t]*/, "", v)
          k = tolower(k)
          if (k == "types") types = v; else if (k == "uris") uris = v
          else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
        }
        if (enabled == "no" || types !~ /(^|[ \t])deb(-src)?([ \t]|$)/) next
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == cn) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f")
  else
    mirror=$(awk -v cn="$codename" '
      { line = $0; sub(/#.*/, "", line); sub(/\[[^]]*\]/, "", line); $0 = line
        if (($1 == "deb" || $1 == "deb-src") && $3 == cn) { print $2; exit } }' "$f")
  fi
  [[ -n $mirror ]] && break
done
[[ -n $mirror ]] || warn "no Debian '$codename' mirror found in the apt sources"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hearth-pgvector.XXXXXX") || warn "mktemp failed"
trap '$SUDO rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/src" "$tmp/build"
echo "deb-src $mirror trixie main" >"$tmp/sources.list"
# apt downloads as the sandbox user _apt: let it write the source files.
id _apt >/dev/null 2>&1 && $SUDO chown _apt "$tmp/src"

apt=(apt-get -qq
  -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o Dir::Cache::archives="$tmp/cache/archives"
  -o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20)
$SUDO "${apt[@]}" update >"$tmp/apt.log" 2>&1 || warn "apt-get update of $mirror trixie failed (no network?)"
# apt-get update exits 0 even when a fetch failed; "Err:"/"W:" lines tell, and `source` then fails anyway.
(cd "$tmp/src" && $SUDO "${apt[@]}" source --download-only pgvector) >>"$tmp/apt.log" 2>&1 \
  || warn "could not download the trixie pgvector source package: $(grep -m1 -E '^(E|W|Err):' "$tmp/apt.log" || echo unknown error)"

orig=$(find "$tmp/src" -maxdepth 1 -name "pgvector_*.orig.tar.*" | head -n1)
[[ -n $orig ]] || warn "no pgvector .orig.tar.* in the downloaded source package"
tar -xf "$orig" -C "$tmp/build" || warn "cannot unpack $orig"
srcdir=$(find "$tmp/build" -mindepth 1 -maxdepth 1 -type d | head -n1)
[[ -n $srcdir && -f $srcdir/Makefile ]] || warn "unexpected layout of $orig"

# with_llvm=no: Debian's PGXS would otherwise also build LLVM bitcode (needs clang/llvm of PG's build).
mk=(make -C "$srcdir" -j"$(nproc)" with_llvm=no PG_CONFIG="$PG_CONFIG")
"${mk[@]}" >"$tmp/build.log" 2>&1 || warn "build failed: $(tail -n1 "$tmp/build.log")"
$SUDO "${mk[@]}" install >>"$tmp/build.log" 2>&1 || warn "make install failed: $(tail -n1 "$tmp/build.log")"
[[ -e $CONTROL ]] || warn "make install did not create $CONTROL"
echo "deps.sh: built and installed pgvector $(basename "$orig" | sed -E 's/^pgvector_([^.]+\.[^.]+\.[^.]+).*/\1/') for PostgreSQL 15 (from Debian trixie source)" >&2
exit 0
