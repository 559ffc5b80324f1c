#!/usr/bin/env bash
# Checks the rules of wishd's layout (docs/development.md, "Layout") with greps over the source:
# which module may import which, what the sans-IO core may not touch, and the one
# home of each concept. Test code is left out: a file's lines from its first
# `#[cfg(test)]` on, and files named tests.rs.
#
#   scripts/check-arrows.sh [SRC_DIR]     (default: src next to this script)
#
# Prints one line per broken rule and exits 1 when any is broken, 0 otherwise.
set -uo pipefail
src=${1:-"$(dirname "$0")/../src"}
src=${src%/}
failed=0

# The non-test code of every .rs file under $1 (a directory or a file), one
# "path:line" prefix per line, as grep -n would print it.
code() {
    find "$@" -name '*.rs' ! -name tests.rs -print0 2>/dev/null | sort -z |
        xargs -0 -r awk '
            FNR == 1 { skip = 0 }
            /^#\[cfg\(test\)\]/ { skip = 1 }
            !skip { printf "%s:%d:%s\n", FILENAME, FNR, $0 }'
}

# Fails `rule` when `pattern` (an extended regex) matches the non-test code of `paths`.
forbid() {
    local rule=$1 pattern=$2
    shift 2
    local hits
    hits=$(code "$@" | grep -E -- "$pattern" | grep -vE '^[^:]+:[0-9]+:\s*//')
    if [[ -n $hits ]]; then
        echo "broken: $rule"
        echo "$hits" | head -n 5 | sed 's/^/    /'
        failed=1
    fi
}

# Fails `rule` when `pattern` matches a comment line of `paths`.
forbid_comment() {
    local rule=$1 pattern=$2
    shift 2
    local hits
    hits=$(code "$@" | grep -E '^[^:]+:[0-9]+:\s*//' | grep -E -- "$pattern")
    if [[ -n $hits ]]; then
        echo "broken: $rule"
        echo "$hits" | head -n 5 | sed 's/^/    /'
        failed=1
    fi
}

# Fails `rule` unless `pattern` matches exactly `count` lines of non-test code in `paths`.
exactly() {
    local rule=$1 count=$2 pattern=$3
    shift 3
    local n
    n=$(code "$@" | grep -cE -- "$pattern")
    if [[ $n != "$count" ]]; then
        echo "broken: $rule (found $n, want $count)"
        code "$@" | grep -E -- "$pattern" | head -n 5 | sed 's/^/    /'
        failed=1
    fi
}

# The crate-internal modules a part imports: `crate::x` anywhere in its code.
imports_of() {
    code "$@" | grep -vE '^[^:]+:[0-9]+:\s*//' | grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u
}

# Fails `rule` when the part at `path` (module name `self`) imports anything of the
# crate outside `allowed` (space-separated).
only_imports() {
    local rule=$1 self=$2 allowed=$3
    shift 3
    local m bad=()
    for m in $(imports_of "$@"); do
        [[ $m == "$self" ]] && continue
        [[ " $allowed " == *" $m "* ]] && continue
        bad+=("$m")
    done
    if ((${#bad[@]})); then
        echo "broken: $rule (imports ${bad[*]})"
        for m in "${bad[@]}"; do
            code "$@" | grep -E "crate::$m\b" | head -n 2 | sed 's/^/    /'
        done
        failed=1
    fi
}

# 1. The core is sans-IO.
forbid "core/ is sans-IO: no tokio" '\btokio\b' "$src/core"
forbid "core/ is sans-IO: no std::net" 'std::net' "$src/core"
forbid "core/ is sans-IO: no locks" '\b(Mutex|RwLock)\b' "$src/core"
forbid "core/ is sans-IO: time is passed in" '(Instant|SystemTime)::now\(' "$src/core"

# 2. Leaves stay leaves.
only_imports "model is a leaf" model "" "$src/model.rs"
only_imports "wire imports only model" wire "model" "$src/wire"
only_imports "sdp imports only model" sdp "model" "$src/sdp"
only_imports "metrics imports only model" metrics "model" "$src/metrics.rs"
only_imports "config imports only model" config "model" "$src/config"
only_imports "auth imports only config and model" auth "config model" "$src/auth"

# 3. Workers and cameras know no HTTP.
forbid "media/ and ingest/ import no http or hyper" '(crate::http|\bhyper\b|\bStatusCode\b)' "$src/media" "$src/ingest"
forbid "media/ and ingest/ make no ETag" '(new_etag|[Ee][Tt]ag\s*\()' "$src/media" "$src/ingest"

# 4. One router and one status map.
exactly "one router: /whip and /whep parsed in http/router.rs only" 2 '"whi[p]" =>|"whe[p]" =>' "$src"
forbid "one router: no path parsing outside http/router.rs" '"whi[p]" =>|"whe[p]" =>|strip_prefix\("/api' $(find "$src" -name '*.rs' ! -path "$src/http/router.rs")
forbid "one status map: errors become statuses in http/error.rs only" '=> StatusCode::[A-Z_]+,?$' $(find "$src" -name '*.rs' ! -path "$src/http/error.rs")

# 5. Config is validated once, and start and check-config share prepare.
exactly "config validated in one place: config/validate.rs" 1 'fn validate\(&self\) -> Result<\(\), ConfigError>' "$src/config/validate.rs"
forbid "config validated in one place: no checks outside config/validate.rs" 'fn validate\(&self\) -> Result<\(\), ConfigError>' $(find "$src" -name '*.rs' ! -path "$src/config/validate.rs")
exactly "start prepares with server::prepare" 1 'prepare\(config\.validated\(\)\?\)' "$src/server.rs"
exactly "the binary prepares start and check-config with server::prepare" 2 'and_then\(prepare\)|prepare\(c\)' "$src/main.rs"

# 6. One home per concept.
exactly "one Role" 1 'pub enum Role\b' "$src"
exactly "one SenderReport" 1 'struct SenderReport\b' "$src"
exactly "one RTCP walker" 1 'fn packets\(' "$src/wire/rtcp.rs"
forbid "RTCP is walked in wire/rtcp.rs only" '\)\) \+ 1\) \* 4|4 \* \(usize::from\(u16::from_be_bytes' $(find "$src" -name '*.rs' ! -path "$src/wire/rtcp.rs")
exactly "one NAL iterator" 1 'fn nal_units\(' "$src"
forbid "H.264 payloads are walked in wire/h264.rs only" '(NAL_STAP_A|NAL_FU_A) =>' $(find "$src" -name '*.rs' ! -path "$src/wire/h264.rs")
exactly "one codec-name map" 1 'CodecKind::H264 => Some\("H264"\)' "$src"
forbid "codec names are mapped in model.rs only" '=> "(H264|VP8|opus)"' $(find "$src" -name '*.rs' ! -path "$src/model.rs")
exactly "one source pipeline" 1 'pub\(crate\) fn packet\(&mut self, track: &SourceTrack' "$src"

# 7. The cache-then-mask ordering rule lives in directory::Stream's methods.
forbid "the viewer mask is touched in directory/stream.rs only" 'viewer_workers\.(fetch_or|fetch_and|store)' $(find "$src" -name '*.rs' ! -path "$src/directory/stream.rs")
forbid "the keyframe cache of a stream is locked in directory/stream.rs only" 'keyframe_cache\s*\.\s*lock\(' $(find "$src" -name '*.rs' ! -path "$src/directory/stream.rs")

# 8. Comments say why; benchmark history stays in BENCHMARKS.md.
forbid_comment "no benchmark history in code comments" '\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth) session' "$src"

# 9. No import circle between the top-level modules.
edges=$(for part in "$src"/*; do
    name=$(basename "$part" .rs)
    [[ $name == lib || $name == main ]] && continue
    for m in $(imports_of "$part"); do
        [[ $m != "$name" ]] && echo "$name $m"
    done
done)
circle=$(python3 - "$edges" <<'PY'
import sys
edges = [l.split() for l in sys.argv[1].splitlines() if l.strip()]
graph = {}
for a, b in edges:
    graph.setdefault(a, set()).add(b)
state, path = {}, []
def visit(n):
    state[n] = 1
    path.append(n)
    for m in sorted(graph.get(n, ())):
        if state.get(m) == 1:
            return path[path.index(m):] + [m]
        if not state.get(m):
            found = visit(m)
            if found:
                return found
    path.pop()
    state[n] = 2
    return None
for n in sorted(graph):
    if not state.get(n):
        found = visit(n)
        if found:
            print(" -> ".join(found))
            break
PY
)
if [[ -n $circle ]]; then
    echo "broken: no import circle between top-level modules ($circle)"
    failed=1
fi

if ((failed)); then
    exit 1
fi
echo "check-arrows: every rule holds"
